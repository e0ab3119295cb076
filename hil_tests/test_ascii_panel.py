"""An information panel on a serial line: the simulated panel on a pty by default, a
real sign when the environment names one (docs/serial.md):

  CITYEDGE_PANEL_PORT=/dev/ttyUSB1    the sign's port (the hardware case runs only if set)
  CITYEDGE_PANEL_BAUD=9600            its baud rate (default 9600)
  CITYEDGE_PANEL_PROFILE=info-panel   its ASCII profile (a name or a path)
  CITYEDGE_PANEL_WRITE=1              also write a test text, read it back, put the old one back
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cityedge.drivers.ascii import Section, build
from cityedge.drivers.ascii.driver import AsciiDriver
from cityedge.sdk.model import InvalidValue, PointAccess
from cityedge.street.ascii_panel import InfoPanel
from cityedge.street.ptypair import PtyPair
from tests.serial.support import FAST_LINE, env

PORT = os.environ.get("CITYEDGE_PANEL_PORT", "")
BAUD = int(os.environ.get("CITYEDGE_PANEL_BAUD", "9600"))
PROFILE = os.environ.get("CITYEDGE_PANEL_PROFILE", "info-panel")
WRITE = os.environ.get("CITYEDGE_PANEL_WRITE", "") == "1"

DEVICE = "hil-panel"

pytestmark = pytest.mark.timeout(120)


@dataclass
class Sign:
    driver: AsciiDriver
    may_write: bool
    simulator: InfoPanel | None = None


def driver_on(port: str, baud: int, profile: str, tmp_path: Path) -> AsciiDriver:
    device = {"name": DEVICE, "profile": profile, "timeout": 2.0, "retries": 2}
    raw = {"name": "hil-ascii", "port": port, "baud": baud, **FAST_LINE, "devices": [device]}
    return build(Section.parse(raw), env(tmp_path))


@pytest.fixture(params=["simulated", pytest.param("hardware", marks=pytest.mark.hardware)])
async def sign(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Sign]:
    if request.param == "hardware":
        if not PORT:
            pytest.skip("set CITYEDGE_PANEL_PORT=/dev/ttyUSB1 to use a real panel")
        yield Sign(driver_on(PORT, BAUD, PROFILE, tmp_path), may_write=WRITE)
        return
    with PtyPair(tmp_path / "ttyPANEL") as pair:
        panel = InfoPanel(message="Welcome")
        panel.attach(pair.master)
        try:
            yield Sign(driver_on(str(pair.link), 9600, "info-panel", tmp_path), True, panel)
        finally:
            panel.detach()


async def test_every_point_reads(sign: Sign) -> None:
    driver = sign.driver
    readings = await driver.read(DEVICE)
    expected = set(driver.catalogue()[DEVICE].points)
    assert {r.point for r in readings} == expected
    for reading in readings:
        print(f"{reading.point} = {reading.value!r} {reading.unit or ''}")


def text_point(driver: AsciiDriver) -> str:
    """The profile's first writable text point (the info panel's `message`)."""
    points = driver.catalogue()[DEVICE].points
    for name, point in points.items():
        if point.kind == "text" and point.access is PointAccess.READ_WRITE:
            return name
    pytest.skip(f"profile {PROFILE} has no writable text point")


async def test_text_written_and_read_back(sign: Sign) -> None:
    if not sign.may_write:
        pytest.skip("set CITYEDGE_PANEL_WRITE=1 to let the test change the sign's text")
    driver = sign.driver
    point = text_point(driver)
    (before,) = await driver.read(DEVICE, [point])
    try:
        await driver.write(DEVICE, point, "CITYEDGE TEST 1-2-3")
        (after,) = await driver.read(DEVICE, [point])
        assert after.value == "CITYEDGE TEST 1-2-3"
    finally:
        await driver.write(DEVICE, point, before.value)
    if sign.simulator is not None:
        assert sign.simulator.commands["MSG"] == 2


async def test_a_bad_text_never_reaches_the_sign(sign: Sign) -> None:
    driver = sign.driver
    point = text_point(driver)
    sent = sum(h.requests for h in driver.health())
    with pytest.raises(InvalidValue):
        await driver.write(DEVICE, point, "x" * 1025)  # longer than any profile allows
    with pytest.raises(InvalidValue):
        await driver.write(DEVICE, point, "line one\r\nBRIGHT 0")
    assert sum(h.requests for h in driver.health()) == sent
    if sign.simulator is not None:
        assert sign.simulator.heard == []
