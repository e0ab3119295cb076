"""A GPS receiver on a serial line: the recorded vehicle capture replayed on a pty by
default, a real receiver when the environment names one (docs/serial.md):

  CITYEDGE_NMEA_PORT=/dev/ttyUSB0   the receiver's port (the hardware case runs only if set)
  CITYEDGE_NMEA_BAUD=9600           its baud rate (default 4800)
  CITYEDGE_NMEA_SECONDS=60          how long to wait for sentences (and a fix)
  CITYEDGE_NMEA_EXPECT_FIX=1        require a position fix (antenna with a sky view)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cityedge.drivers.nmea import Section, build
from cityedge.drivers.nmea.driver import NmeaDriver
from cityedge.sdk.health import UNREACHABLE_EVENT
from cityedge.sdk.model import DeviceState
from cityedge.street.gps import load_capture, replay
from cityedge.street.ptypair import PtyPair
from hil_tests.conftest import SocatCable
from tests.serial.support import CAPTURE, FAST_LINE, env, health_of, running, until

PORT = os.environ.get("CITYEDGE_NMEA_PORT", "")
BAUD = int(os.environ.get("CITYEDGE_NMEA_BAUD", "4800"))
SECONDS = float(os.environ.get("CITYEDGE_NMEA_SECONDS", "60"))
EXPECT_FIX = os.environ.get("CITYEDGE_NMEA_EXPECT_FIX", "") == "1"

DEVICE = "hil-gps"

pytestmark = pytest.mark.timeout(SECONDS * 2 + 60)


def driver_on(port: str, tmp_path: Path, baud: int = 4800, **extra: object) -> NmeaDriver:
    raw = {"name": "hil-nmea", "device": DEVICE, "port": port, "baud": baud, "interval": 0,
           **FAST_LINE, **extra}  # fmt: skip
    return build(Section.parse(raw), env(tmp_path))


@contextlib.asynccontextmanager
async def replaying(pair: PtyPair) -> AsyncIterator[None]:
    """The capture, over and over, at a pace a 4800-baud receiver could keep."""
    lines = load_capture(CAPTURE)

    async def loop() -> None:
        while True:
            await replay(pair.send, lines, gap=0.005)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


async def test_simulated_receiver_on_a_pty(pty_pair: PtyPair, tmp_path: Path) -> None:
    driver = driver_on(str(pty_pair.link), tmp_path)
    async with running(driver) as sink:
        await until(lambda: driver.listening, "port open")
        async with replaying(pty_pair):
            await until(lambda: len(sink.values("clock_hint")) >= 5, "a capture's worth of fixes")
    assert sink.values("latitude")[0] == 48.1173
    assert health_of(driver, DEVICE).state is DeviceState.UP


async def test_unplug_and_replug_through_a_socat_cable(
    socat_cable: SocatCable, tmp_path: Path
) -> None:
    driver = driver_on(str(socat_cable.driver), tmp_path)
    lines = [line + b"\r\n" for line in load_capture(CAPTURE)]

    def talk() -> None:  # the receiver's end, opened by path as a simulator would
        fd = os.open(socat_cable.device, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            for line in lines:
                with contextlib.suppress(BlockingIOError):
                    os.write(fd, line)
        finally:
            os.close(fd)

    async with running(driver) as sink:
        await until(lambda: driver.listening, "port open")
        for _ in range(100):
            talk()
            if health_of(driver, DEVICE).state is DeviceState.UP:
                break
            await asyncio.sleep(0.05)
        await until(lambda: health_of(driver, DEVICE).state is DeviceState.UP, "up")

        socat_cable.unplug()
        await until(lambda: health_of(driver, DEVICE).state is DeviceState.DOWN, "down")
        socat_cable.plug()
        await until(lambda: driver.listening, "port reopened")
        for _ in range(100):
            talk()
            if health_of(driver, DEVICE).state is DeviceState.UP:
                break
            await asyncio.sleep(0.05)
        await until(lambda: health_of(driver, DEVICE).state is DeviceState.UP, "up again")
    assert sink.kinds(UNREACHABLE_EVENT) == [True, False]


@pytest.mark.hardware
@pytest.mark.skipif(not PORT, reason="set CITYEDGE_NMEA_PORT=/dev/ttyUSB0 to use a receiver")
async def test_real_receiver(tmp_path: Path) -> None:
    driver = driver_on(PORT, tmp_path, baud=BAUD, stale_after=min(30.0, SECONDS))
    async with running(driver) as sink:
        try:
            await until(lambda: health_of(driver, DEVICE).state is DeviceState.UP, "sentences",
                        timeout=SECONDS)  # fmt: skip
        except AssertionError:
            health = health_of(driver, DEVICE)
            pytest.fail(f"no valid sentence from {PORT} at {BAUD} baud in {SECONDS:g} s: "
                        f"{health.detail} {health.errors}")  # fmt: skip
        await until(lambda: bool(sink.values("fix")), "a first epoch", timeout=SECONDS)
        if EXPECT_FIX:
            try:
                await until(lambda: bool(sink.values("clock_hint")), "a fix", timeout=SECONDS)
            except AssertionError:
                pytest.fail(f"no fix in {SECONDS:g} s (fix={sink.values('fix')[-1]}, "
                            f"satellites={sink.values('satellites')[-1:]})")  # fmt: skip
            assert -90 <= sink.values("latitude")[-1] <= 90  # type: ignore[operator]
            assert -180 <= sink.values("longitude")[-1] <= 180  # type: ignore[operator]
            skew = sink.values("clock_hint")[-1] - time.time()  # type: ignore[operator]
            print(f"receiver clock vs gateway clock: {skew:+.3f} s")
    print(f"{PORT}: {health_of(driver, DEVICE)}")
