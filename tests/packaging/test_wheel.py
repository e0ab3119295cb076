"""The wheel is the product: built from the checkout, installed into a fresh venv
outside it (dependencies from the package index, as a user would get them), it
finds its shipped profiles and example configs and runs.

The short run uses the installed example config's gateway, policy and first
Modbus bus (its lamppost, with the shipped `lamppost` profile), pointed at a
simulated lamppost and a private broker: the rest of the example names real
hardware (serial ports, a BLE radio, UDP port 1700) that this machine lacks.
The install takes a minute or so the first time (dependency wheels).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cityedge.drivers.modbus.profile import load_profile
from cityedge.protocol.key_files import create_key
from cityedge.street.broker import Broker
from cityedge.street.modbus import ModbusStreet
from tests.packaging.conftest import ROOT
from tests.support.agent_process import to_toml
from tests.support.command_post import CommandPost

pytestmark = pytest.mark.timeout(900)


@dataclass(frozen=True)
class Installed:
    venv: Path
    home: Path  # a working directory outside the checkout
    shipped: Path  # cityedge.shipped, as the installed agent finds it

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("NOTIFY_SOCKET", None)
        env.pop("CITYEDGE_CONFIG", None)
        return env

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / args[0]), *args[1:]],
            capture_output=True, text=True, timeout=timeout, cwd=self.home, env=self.env(),
        )  # fmt: skip


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    home = tmp_path_factory.mktemp("installed")
    assert not home.resolve().is_relative_to(ROOT)
    venv = home / "venv"
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert made.returncode == 0, made.stderr
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True, text=True, timeout=600, cwd=home,
    )  # fmt: skip
    assert pip.returncode == 0, f"pip install of the wheel failed:\n{pip.stdout}\n{pip.stderr}"
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "from cityedge.sdk.driver import SHIPPED_CONFIG_DIR; print(SHIPPED_CONFIG_DIR)"],
        capture_output=True, text=True, timeout=60, cwd=home,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    return Installed(venv, home, Path(where.stdout.strip()))


def test_the_wheel_carries_profiles_codecs_example_configs_and_the_licence(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in (
        "cityedge/shipped/__init__.py",
        "cityedge/shipped/agent.example.toml",
        "cityedge/shipped/demo.toml",
        "cityedge/shipped/profiles/lamppost.toml",
        "cityedge/shipped/profiles/energy-meter.toml",
        "cityedge/shipped/profiles/ascii/info-panel.toml",
        "cityedge/shipped/lorawan/waste-bin.toml",
        "cityedge/shipped/lorawan/cayenne-lpp.toml",
    ):
        assert shipped in names, f"{shipped} missing from {wheel.name}"
    every_config_file = {
        "cityedge/shipped/" + p.relative_to(ROOT / "config").as_posix()
        for p in (ROOT / "config").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert every_config_file <= names, sorted(every_config_file - names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "LICENSE not in wheel"
    metadata = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith(".dist-info/METADATA")))
        .decode()
    )
    assert "License-Expression: Apache-2.0" in metadata


def test_the_installed_agent_is_the_wheel_not_the_checkout(installed: Installed) -> None:
    assert installed.shipped.is_relative_to(installed.venv), installed.shipped
    assert (installed.shipped / "profiles" / "lamppost.toml").is_file()
    helped = installed.run("cityedge", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "run" in helped.stdout and "config" in helped.stdout


def test_config_check_accepts_the_installed_example(installed: Installed) -> None:
    example = installed.shipped / "agent.example.toml"
    checked = installed.run("cityedge", "config", "check", str(example))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok" in checked.stdout


def test_config_check_names_a_missing_profile_with_the_shipped_ones(
    installed: Installed, tmp_path: Path
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        to_toml({
            "gateway": {"id": "gw", "site": "s", "state_dir": str(tmp_path / "state")},
            "drivers": {"modbus": [{"name": "bus", "devices": [
                {"name": "d", "profile": "no-such-thing", "host": "127.0.0.1"}]}]},
        })
    )  # fmt: skip
    checked = installed.run("cityedge", "config", "check", str(config))
    assert checked.returncode != 0
    out = checked.stdout + checked.stderr
    assert "no such profile" in out and "lamppost" in out and "energy-meter" in out, out


def run_config(example: dict[str, Any], street: ModbusStreet, broker: Broker, state: Path) -> str:
    """The example's gateway, policy and first Modbus TCP bus, on this test's street and broker."""
    lamp = next(d for d in street.devices if d.profile == "lamppost")
    bus = next(t for t in example["drivers"]["modbus"] if t.get("transport", "tcp") == "tcp")
    devices = [
        {**d, "host": lamp.host, "port": lamp.port, "unit": lamp.unit, "poll_interval": 0.2}
        for d in bus["devices"]
        if d["profile"] == "lamppost"
    ]
    assert devices, "the example's first Modbus TCP bus has no lamppost any more"
    return to_toml({
        "gateway": {**example["gateway"], "state_dir": str(state)},
        "uplink": {"host": "127.0.0.1", "port": broker.port, "batch_interval": 0.05,
                   "reconnect_min": 0.2, "reconnect_max": 1.0},
        "control": {"socket": str(state / "control.sock")},
        "pipeline": {"full_report_interval": 0.001},
        "logging": {"format": "json"},
        "policy": example["policy"],
        "drivers": {"modbus": [{**bus, "devices": devices}]},
    })  # fmt: skip


async def test_a_short_run_of_the_example_loads_its_profile_and_publishes(
    installed: Installed, tmp_path: Path
) -> None:
    example = tomllib.loads((installed.shipped / "agent.example.toml").read_text())
    lamppost = load_profile(installed.shipped / "profiles" / "lamppost.toml")
    state = tmp_path / "state"
    key = create_key(state / "keys" / "gateway.key")
    with Broker(workdir=tmp_path / "broker") as broker:
        async with ModbusStreet(lampposts=1, meters=0) as street:
            config = tmp_path / "agent.toml"
            config.write_text(run_config(example, street, broker, state))
            async with CommandPost(broker.port, key.public_key) as post:
                with (tmp_path / "agent.log").open("wb") as log:
                    agent = subprocess.Popen(  # noqa: ASYNC220 (starting it is instant)
                        [str(installed.venv / "bin" / "cityedge"), "run", "-c", str(config)],
                        cwd=installed.home, env=installed.env(), stdout=log,
                        stderr=subprocess.STDOUT,
                    )  # fmt: skip
                try:
                    device = example["drivers"]["modbus"][0]["devices"][0]["name"]

                    def published() -> bool:
                        return any(
                            r.reading.device == device and r.reading.point == "dimming"
                            for r in post.readings
                        )

                    seen = await post.wait_for(published, timeout=60)
                finally:
                    agent.send_signal(signal.SIGTERM)
                    code = await asyncio.to_thread(agent.wait, 30)
    logs = (tmp_path / "agent.log").read_text(errors="replace")
    assert seen, f"no verified 'dimming' reading from {device}; agent log:\n{logs[-3000:]}"
    assert not post.rejected, post.rejected[:3]
    points = {r.reading.point for r in post.readings if r.reading.device == device}
    assert points <= set(lamppost.points), points - set(lamppost.points)
    assert code == 0, logs[-3000:]
