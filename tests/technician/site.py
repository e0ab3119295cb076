"""A gateway site for the technician tests: simulated lampposts, a broker, a config, an agent.

The street runs in its own thread (with its own event loop) so that plain
synchronous tests can run the real `cityedge` CLI as a subprocess while the
simulated devices keep answering.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from cityedge.street.modbus import ModbusStreet
from tests.support.agent_process import ROOT, AgentProcess, agent_env, to_toml

T = TypeVar("T")

POLICY = {
    "lamppost": {
        "writes": {"dimming": {"min": 0, "max": 100}, "lamp_on": {"choices": [False, True]}}
    }
}


class StreetThread:
    """`with StreetThread(lampposts=3) as street:` — a ModbusStreet served from a thread."""

    def __init__(self, lampposts: int = 3, meters: int = 0) -> None:
        self.street = ModbusStreet(lampposts=lampposts, meters=meters)
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="street", daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.street.__aenter__())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    def __enter__(self) -> StreetThread:
        self._thread.start()
        if not self._ready.wait(20) or self._error is not None:
            raise RuntimeError(f"the simulated street did not start: {self._error}")
        return self

    def run(self, make: Callable[[], Coroutine[Any, Any, T]], timeout: float = 15) -> T:
        """Run a coroutine on the street's loop (switch_off, switch_on) and wait for it."""
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(timeout)

    def __exit__(self, *exc: object) -> None:
        if self._error is None:
            self.run(self.street.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def short_dir() -> Path:
    """A socket path must fit in 107 bytes; pytest's tmp paths may not."""
    return Path(tempfile.mkdtemp(prefix="ce-", dir="/tmp"))


def write_config(
    directory: Path,
    *,
    broker_port: int,
    socket: Path,
    modbus: list[dict[str, Any]] | None = None,
    **sections: dict[str, Any],
) -> Path:
    doc: dict[str, Any] = {
        "gateway": {"id": "gw-tech", "site": "town-07", "state_dir": str(directory / "state")},
        "uplink": {
            "host": "127.0.0.1",
            "port": broker_port,
            "reconnect_min": 0.2,
            "reconnect_max": 1.0,
            "batch_interval": 0.05,
            "connect_timeout": 3.0,
        },
        "outbox": {"commit_interval": 0.1},
        "logging": {"level": "info", "format": "json"},
        "control": {"socket": str(socket)},
        "policy": POLICY,
    }
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    if modbus:
        doc["drivers"] = {"modbus": modbus}
    path = directory / "agent.toml"
    path.write_text(to_toml(doc))
    return path


class TechnicianAgent(AgentProcess):
    """The agent subprocess with its control socket (see tests/technician/launch.py)."""

    def __init__(self, config_path: Path, socket: Path) -> None:
        super().__init__(config_path)
        self.socket = socket

    def start(self) -> TechnicianAgent:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.technician.launch", "-c", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=agent_env(),
        )
        log.close()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        from cityedge.gateway.control.client import ControlClient

        client = ControlClient(self.socket, timeout=2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if client.running():
                return
            if not self.running():
                break
            time.sleep(0.1)
        raise AssertionError(f"the agent's control socket never answered:\n{self.logs()[-3000:]}")

    def __enter__(self) -> TechnicianAgent:
        self.start()
        self.wait_ready()
        return self


def technician(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a technician command with the real CLI, as a subprocess."""
    entry = ["-m", "cityedge.cli"]
    return subprocess.run(
        [sys.executable, *entry, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=agent_env(),
    )


def wait_until(condition: Callable[[], bool], timeout: float = 20, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
