"""`cityedge demo`: a whole street on one machine.

Starts the devices named in `config/demo.toml` as simulators on loopback, a
private Mosquitto on the config's uplink port, the agent itself (a real
`cityedge run` subprocess), and the command-post console, which verifies every
message and prints what the street reports. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import TextIO

from cityedge.drivers.lorawan.config import Section as LoRaSection
from cityedge.drivers.lorawan.keyring import OtaaDevice, Session, key_file_entry, load_keyring
from cityedge.gateway.config import ConfigError, LoadedConfig, load_config
from cityedge.protocol.key_files import create_key, load_signing_key
from cityedge.sdk.driver import SHIPPED_CONFIG_DIR
from cityedge.street.broker import Broker
from cityedge.street.lorawan import LoRaStreet
from cityedge.street.show_task import ShowTask

DEMO_CONFIG = SHIPPED_CONFIG_DIR / "demo.toml"


def default_demo_config(shipped: Path = DEMO_CONFIG) -> Path:
    """The demo config to run when none is named.

    In a checkout, the shipped file itself: its state goes to `<repo>/.demo-state`.
    In an installed wheel the shipped file sits in site-packages, where the demo's
    state (`../.demo-state`, relative to the file) must not go: a copy under
    `$XDG_STATE_HOME/cityedge/demo/` (default ~/.local/state) is run instead.
    """
    home = shipped.parent.parent
    if "site-packages" not in shipped.parts and os.access(home, os.W_OK):
        return shipped
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    copy = base / "cityedge" / "demo" / "config" / shipped.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_bytes(shipped.read_bytes())  # a fresh copy: an upgrade brings its demo
    return copy


def say(text: str) -> None:
    print(text, flush=True)  # noqa: T201  (the demo talks to a person)


def run_demo(*, config: Path = DEMO_CONFIG, duration: float = 0.0, log: bool = False) -> int:
    """The street, its agent and a command post; a live view of it (`log`: every line)."""
    try:
        loaded = load_config(config)
    except ConfigError as err:
        say(err.render())
        return 2
    cfg = loaded.config
    state = cfg.gateway.state_dir
    state.mkdir(parents=True, exist_ok=True)
    lock = _hold_lock(state / "demo.lock")
    if isinstance(lock, str):  # before anything of the running demo's is touched
        print(f"cityedge: {lock}", file=sys.stderr)  # noqa: T201
        return 1
    key_path = cfg.signing_key_path
    key = load_signing_key(key_path) if key_path.exists() else create_key(key_path)
    say(f"gateway {cfg.gateway.id} key {key.key_id} ({key_path})")
    # The demo's command post has its own key; the config trusts its public half.
    central_path = state / "command-post.key"
    central = load_signing_key(central_path) if central_path.exists() else create_key(central_path)
    (state / "command-post.pub").write_text(central.public_text() + "\n")
    for section in _lora_sections(loaded):
        _demo_sensor_keys(loaded.path.parent / section.sessions)
        # The simulated sensors count their frames from 1 again on every run, like ABP
        # devices after a battery change: forget their counters, or all would be replays.
        for leftover in state.glob(f"lorawan-{section.name}*.db*"):
            leftover.unlink()
    broker = Broker(port=cfg.uplink.port, workdir=state / "broker")
    try:
        broker.start()
    except RuntimeError as exc:
        say(f"cannot start the demo broker on 127.0.0.1:{cfg.uplink.port}: {exc}")
        return 1
    say(f"broker: mosquitto on 127.0.0.1:{cfg.uplink.port}")
    try:
        return asyncio.run(_street(loaded, key.public_text(), central_path, duration, log))
    except KeyboardInterrupt:
        return 0
    finally:
        broker.stop()
        say("demo stopped")


def _hold_lock(path: Path) -> TextIO | str:
    """The demo's lock on its state dir, held while it runs (the open file); or why not.

    A second demo on the same state would delete the LoRaWAN counters of the running
    one, then fail to bind its ports."""
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        return (
            f"a demo is already running (pid {holder}, state {path.parent}); "
            "stop it first (Ctrl-C in its terminal), or give this one its own -c config"
        )
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


async def _street(
    loaded: LoadedConfig, trust: str, central_key: Path, duration: float, log: bool
) -> int:
    from cityedge.street.modbus import ModbusStreet

    cfg = loaded.config
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    devices = [
        device
        for kind, section in cfg.driver_sections()
        if kind == "modbus"
        for device in getattr(section, "devices", [])
    ]
    # The demo config lists lampposts first, then the meter, on consecutive ports.
    lampposts = sum(1 for d in devices if d.profile.type == "lamppost")
    meters = sum(1 for d in devices if d.profile.type == "energy-meter")
    base_port = min((d.port for d in devices), default=15021)
    async with ModbusStreet(lampposts, meters, base_port=base_port) as street:
        say(f"street: {len(street.devices)} simulated Modbus devices on loopback")
        log_path = cfg.gateway.state_dir / "agent.log"
        with log_path.open("ab") as agent_log:
            agent = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cityedge.cli", "run", "-c", str(loaded.path),
                stdout=agent_log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        say(f"agent: pid {agent.pid}, log {log_path}")
        view: ShowTask | None = None
        console = None
        if log:  # the firehose: every verified reading, event and result, one a line
            say("command post: `cityedge central watch` verifies every message (Ctrl-C stops)\n")
            console = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cityedge.cli", "central", "watch",
                "--broker", f"mqtt://127.0.0.1:{cfg.uplink.port}", "--trust", trust,
                "--command-key", str(central_key.with_suffix(".pub")), "--gap-grace", "10",
            )  # fmt: skip
        else:
            say("command post: verifying every message; the street below (Ctrl-C stops, "
                "--log for every line)\n")  # fmt: skip
            view = ShowTask(cfg.uplink.port, trust, central_key.with_suffix(".pub"))
        commander = asyncio.create_task(_dim_a_lamppost(loaded, trust, central_key, view))
        radio = [asyncio.create_task(street_lora.run()) for street_lora in _lora_streets(loaded)]
        showing = asyncio.create_task(view.run(stop)) if view else None
        try:
            if duration > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), duration)
            else:
                await stop.wait()
        finally:
            commander.cancel()
            for task in radio:
                task.cancel()
            # The agent first, so that the console still shows its "offline" state.
            with contextlib.suppress(ProcessLookupError):
                agent.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(agent.wait(), 20)
            except TimeoutError:
                agent.kill()
            await asyncio.sleep(1.0)
            if console is not None:
                with contextlib.suppress(ProcessLookupError):
                    console.send_signal(signal.SIGINT)
                try:
                    await asyncio.wait_for(console.wait(), 10)
                except TimeoutError:
                    console.kill()
            if view is not None and showing is not None:
                view.stop.set()
                await asyncio.wait_for(asyncio.gather(showing, return_exceptions=True), 10)
    return 0


DEMO_SENSORS = (("bin-0042", "waste-bin"), ("bin-0043", "waste-bin"),
                ("air-0007", "environment-station"), ("park-0311", "parking-sensor"))  # fmt: skip


def _demo_sensor_keys(path: Path) -> None:
    """The demo's LoRaWAN sensors get fresh keys on the first run (mode 0600); a key
    file of an older demo gets the OTAA sensor added."""
    # one that joins over the air (OTAA), as most sensors bought today do
    otaa = OtaaDevice("bin-0099", "waste-bin", "70B3D57ED0000099", "70B3D57ED0000000",
                      secrets.token_bytes(16))  # fmt: skip
    if path.exists():
        if "dev_eui" not in path.read_text():
            with path.open("a") as out:
                out.write("\n" + key_file_entry(otaa))
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sessions = [Session(name, device_type, 0x26011B00 + i, secrets.token_bytes(16),
                        secrets.token_bytes(16))
                for i, (name, device_type) in enumerate(DEMO_SENSORS)]  # fmt: skip
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        devices: list[Session | OtaaDevice] = [*sessions, otaa]
        out.write("\n".join(key_file_entry(d) for d in devices))


def _lora_sections(loaded: LoadedConfig) -> list[LoRaSection]:
    return [s for _, s in loaded.config.driver_sections() if isinstance(s, LoRaSection)]


def _lora_streets(loaded: LoadedConfig) -> list[LoRaStreet]:
    streets = []
    for section in _lora_sections(loaded):
        keyring = load_keyring(loaded.path.parent / section.sessions)
        otaa = list(keyring.otaa.values())
        streets.append(LoRaStreet(list(keyring.values()), section.port, otaa=otaa))
        say(f"radio: {len(keyring)} LoRaWAN sensors (+{len(otaa)} joining over the air) "
            "behind 2 simulated packet forwarders")  # fmt: skip
    return streets


async def _dim_a_lamppost(
    loaded: LoadedConfig, trust: str, central_key: Path, view: ShowTask | None
) -> None:
    """Show the command path too: a signed dimming command, and its signed answer."""
    cfg = loaded.config
    await asyncio.sleep(4)
    if view is None:
        say("\ncommand post: dimming lamppost-001 to 40 % (signed command)")
    else:
        view.view.command = "dimming lamppost-001 to 40 % (signed command sent)"
    sender = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cityedge.cli", "central", "send",
        "--broker", f"mqtt://127.0.0.1:{cfg.uplink.port}", "--key", str(central_key),
        "--trust", trust, "--site", cfg.gateway.site, "--timeout", "15",
        cfg.gateway.id, "lamppost-001", "write", "point=dimming", "value=40",
        stdout=None if view is None else subprocess.DEVNULL,
        stderr=None if view is None else subprocess.DEVNULL,
    )  # fmt: skip
    await sender.wait()
