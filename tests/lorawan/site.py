"""A LoRaWAN street on loopback: a private Mosquitto, the real agent (a subprocess)
listening for GWMP on a free UDP port, a verifying command post, and simulated
packet forwarders. Used by hil_tests/test_lorawan.py and bench/lorawan.py."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cityedge.drivers.lorawan.frames import build_uplink
from cityedge.drivers.lorawan.keyring import OtaaDevice, Session, key_file_entry
from cityedge.gateway.control.client import ControlClient
from cityedge.protocol.key_files import create_key
from cityedge.protocol.keys import SigningKey
from cityedge.street.broker import Broker
from cityedge.street.lorawan import PacketForwarder
from cityedge.street.lorawan_reports import example_payload
from tests.support.agent_process import AgentProcess, to_toml
from tests.support.command_post import CommandPost

FORWARDERS = ("AA555A0000000101", "AA555A0000000102")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def key_file(path: Path, sessions: Sequence[Session], otaa: Sequence[OtaaDevice] = ()) -> Path:
    text = "\n".join(key_file_entry(d) for d in [*sessions, *otaa])  # type: ignore[arg-type]
    path.write_text(text)
    path.chmod(0o600)
    return path


@dataclass
class LoRaSite:
    workdir: Path
    broker: Broker
    agent: AgentProcess
    post: CommandPost
    port: int
    sessions: Sequence[Session]
    gateway_key: SigningKey
    config: Path
    fcnt: dict[int, int]

    @property
    def agent_pid(self) -> int:
        assert self.agent.proc is not None
        return self.agent.proc.pid

    def frame(self, session: Session, fcnt: int | None = None, payload: bytes | None = None,
              fport: int | None = None) -> bytes:  # fmt: skip
        """The session's next uplink (or the one with `fcnt`), with a realistic payload."""
        if fcnt is None:
            fcnt = self.fcnt.get(session.dev_addr, 0) + 1
        self.fcnt[session.dev_addr] = max(fcnt, self.fcnt.get(session.dev_addr, 0))
        port, body = example_payload(session.device_type, fcnt)
        return build_uplink(session.dev_addr, fcnt, fport or port, payload or body,
                            session.nwk_skey, session.app_skey)  # fmt: skip

    def forwarder(self, i: int = 0) -> PacketForwarder:
        return PacketForwarder(FORWARDERS[i], self.port)

    def control(self) -> ControlClient:
        return ControlClient(self.workdir / "state" / "control.sock", timeout=10)

    def devices(self) -> dict[str, Any]:
        data = self.control().call("devices")
        rows = data if isinstance(data, list) else data.get("devices", [])
        return {row["device"]: row for row in rows}

    def delivered(self) -> int:
        """Frames whose readings reached the command post verified (one rssi each)."""
        return sum(1 for r in self.post.readings if r.reading.point == "rssi")

    async def send_steady(self, rate: float, seconds: float) -> int:
        """Frames from every sensor in turn at `rate` per second; returns how many."""
        sent = 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        async with self.forwarder(0) as fwd:
            for n in range(int(rate * seconds)):
                session = self.sessions[n % len(self.sessions)]
                await fwd.uplink(self.frame(session))
                sent += 1
                delay = start + (n + 1) / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
        return sent

    async def wait_delivered(self, count: int, timeout: float = 30) -> bool:
        return await self.post.wait_for(lambda: self.delivered() >= count, timeout)

    def restart(self) -> None:
        """Stop the agent and start it again; back once its LoRaWAN port listens."""
        self.agent.stop()
        self.agent = AgentProcess(self.config).start()
        if not self.agent.wait_for_log("lorawan.listening", 30):
            raise RuntimeError("the restarted agent did not listen within 30 s")


@contextlib.asynccontextmanager
async def lorawan_site(
    workdir: Path,
    sessions: Sequence[Session],
    otaa: Sequence[OtaaDevice] = (),
    forwarders: Sequence[str] = FORWARDERS,  # [] for the bench setting: the first few heard
) -> AsyncIterator[LoRaSite]:
    gateway_key = create_key(workdir / "state" / "keys" / "gateway.key")
    port = free_udp_port()
    with Broker(workdir=workdir / "broker") as broker:
        doc = {
            "gateway": {"id": "gw-lora", "site": "town-07", "state_dir": str(workdir / "state")},
            "uplink": {"host": "127.0.0.1", "port": broker.port, "batch_interval": 0.05},
            "outbox": {"commit_interval": 0.1},
            "pipeline": {"full_report_interval": 0.001},
            "logging": {"level": "info", "format": "json"},
            "drivers": {"lorawan": [{
                "name": "lora", "port": port, "dedup_window": 0.2,
                "sessions": str(key_file(workdir / "sessions.toml", sessions, otaa)),
                "net_id": "000013",
                "forwarders": list(forwarders),
            }]},
        }  # fmt: skip
        config = workdir / "agent.toml"
        config.write_text(to_toml(doc))
        async with CommandPost(broker.port, gateway_key.public_key) as post:
            agent = AgentProcess(config).start()
            site = LoRaSite(workdir, broker, agent, post, port, sessions, gateway_key, config, {})
            try:
                if not await post.wait_for(lambda: bool(post.states), timeout=30):
                    raise RuntimeError("the agent did not come online:\n" + agent.logs())
                if not await asyncio.to_thread(agent.wait_for_log, "lorawan.listening", 20):
                    raise RuntimeError("the LoRaWAN driver did not start:\n" + agent.logs())
                yield site
            finally:
                site.agent.stop()
