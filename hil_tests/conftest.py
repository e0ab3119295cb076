"""Fixtures for hardware-in-the-loop and fault tests: virtual serial cables, and a site.

* `pty_pair` — one pseudo-terminal: the device end is an fd (`pair.master`) a
  simulator reads and writes, the driver end a symlink (`pair.link`), like
  `/dev/serial/by-id/…`. `pair.unplug()` hangs the line up and removes the
  node, as pulling a USB adapter does; `pair.replug()` brings a fresh one back
  under the same name; `pair.unplug(hang_up=False)` removes only the node.
* `socat_cable` — two symlinked ends joined by socat
  (`pty,raw,echo=0,link=…`), for simulators that open a port by path (a
  pymodbus RTU server, say): `cable.device` for the simulator, `cable.driver`
  for the driver. `unplug()` stops socat (both ends hang up, both links go);
  `replug()` starts it again on the same paths.
* `site` — the fault-injection suites' site (`fault_site.Site`): a private
  Mosquitto, three simulated lampposts and a verifying command post.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cityedge.protocol.key_files import create_key
from cityedge.street.broker import Broker
from cityedge.street.modbus import ModbusStreet
from cityedge.street.ptypair import PtyPair
from hil_tests.fault_site import Site, write_config
from tests.support.command_post import CommandPost


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[PtyPair]:
    with PtyPair(tmp_path / "ttyUSB-hil") as pair:
        yield pair


class SocatCable:
    """A null-modem cable between two pty symlinks, made by socat."""

    def __init__(self, directory: Path) -> None:
        self.device = directory / "ttyDEV"
        self.driver = directory / "ttyDRV"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def plugged(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def plug(self, timeout: float = 5.0) -> None:
        if self.plugged:
            return
        self._process = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={self.device}", f"pty,raw,echo=0,link={self.driver}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while not (self.device.exists() and self.driver.exists()):
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"socat exited: {err.strip()}")
            if time.monotonic() > deadline:
                self.unplug()
                raise TimeoutError(f"socat did not create {self.device} and {self.driver}")
            time.sleep(0.01)

    def unplug(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
            if process.stderr is not None:
                process.stderr.close()
        for link in (self.device, self.driver):  # socat removes them; make sure
            with contextlib.suppress(FileNotFoundError):
                link.unlink()

    def replug(self) -> None:
        self.unplug()
        self.plug()


@pytest.fixture
def socat_cable(tmp_path: Path) -> Iterator[SocatCable]:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (apt-get install socat)")
    cable = SocatCable(tmp_path)
    cable.plug()
    try:
        yield cable
    finally:
        cable.unplug()


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    key = create_key(tmp_path / "state" / "keys" / "gateway.key")
    with Broker(workdir=tmp_path / "broker") as broker:
        async with ModbusStreet(lampposts=3, meters=0) as street:
            config = write_config(tmp_path, broker.port, street)
            subscribing = time.time()
            async with CommandPost(broker.port, key.public_key) as post:
                # the command post's session must outlive a SIGKILLed broker, as a real
                # command post's does on a broker configured for it
                await broker.saved(since=subscribing)
                yield Site(tmp_path, broker, street, key, post, config)
