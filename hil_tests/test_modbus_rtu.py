"""Modbus RTU on real pseudo-terminals, or on a real RS-485 bus.

Simulated (the default): a junction cabinet — two traffic controllers (units
1, 2) and an energy meter (unit 3) served by pymodbus's RTU server — on the
device end of a virtual cable (`cityedge.street.rs485`: two pty pairs and a
relay), the driver on the gateway end. The relay paces bytes at 19200 baud,
corrupts or drops a seeded share of them, and can be unplugged.

Hardware: set CITYEDGE_RTU_PORT (e.g. /dev/ttyUSB0) and optionally
CITYEDGE_RTU_BAUD (19200), CITYEDGE_RTU_PARITY (E), CITYEDGE_RTU_STOPBITS (1)
and CITYEDGE_RTU_UNITS ("1=traffic-controller,2=traffic-controller,3=energy-meter",
a bare unit means a traffic controller). The clean-line read test then reads
the real bus; the noise and unplug tests need the simulated line and skip.
See docs/modbus.md.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from cityedge.drivers.modbus.budget import LineFormat
from cityedge.drivers.modbus.buses import BUS_SUFFIX
from cityedge.drivers.modbus.driver import ModbusDriver
from cityedge.drivers.modbus.profile import resolve_profile
from cityedge.sdk.model import DeviceState, Reading
from cityedge.street.modbus import JunctionCabinet, ModbusStreet
from cityedge.street.rs485 import Cable
from tests.modbus.test_rtu_driver import Recorder, make_driver, running, wait_until

pytestmark = pytest.mark.timeout(120)

HARDWARE_PORT = os.environ.get("CITYEDGE_RTU_PORT")
SIMULATED = pytest.mark.skipif(
    HARDWARE_PORT is not None, reason="needs the simulated line (CITYEDGE_RTU_PORT is set)"
)
LINE = LineFormat(19200, parity="N", stopbits=2)  # 11 bits a character, as 8E1; ptys lack parity


def hardware_table() -> dict[str, Any]:
    """The `[[drivers.modbus]]` table of the real bus the environment names."""
    assert HARDWARE_PORT is not None
    units = os.environ.get("CITYEDGE_RTU_UNITS", "1=traffic-controller")
    devices = []
    for entry in units.split(","):
        unit, _, profile = entry.strip().partition("=")
        name = f"unit-{int(unit)}"
        kind = profile or "traffic-controller"
        devices.append({"name": name, "unit": int(unit), "profile": kind, "poll_interval": 1.0})
    return {
        "name": "bench-bus",
        "transport": "rtu",
        "port": HARDWARE_PORT,
        "baud": int(os.environ.get("CITYEDGE_RTU_BAUD", "19200")),
        "parity": os.environ.get("CITYEDGE_RTU_PARITY", "E"),
        "stopbits": int(os.environ.get("CITYEDGE_RTU_STOPBITS", "1")),
        "timeout": 0.5,
        "devices": devices,
    }


@dataclass
class Site:
    """A simulated junction on a virtual cable."""

    cable: Cable
    cabinet: JunctionCabinet

    def table(self, line: dict[str, Any] | None = None, **devices: Any) -> dict[str, Any]:
        return self.cabinet.driver_table(
            "junction",
            self.cable.gateway_end,
            line={"timeout": 0.5, "reopen_max": 0.4, **(line or {})},  # generous: shared CPU
            **devices,
        )


async def simulated_site(tmp_path: Path, **cable: Any) -> AsyncIterator[Site]:
    async with (
        Cable(tmp_path, **cable) as wire,
        JunctionCabinet(wire.device_end, line=LINE, seed=9) as cabinet,
    ):
        yield Site(wire, cabinet)


@pytest.fixture
async def noisy_site(tmp_path: Path) -> AsyncIterator[Site]:
    # ~1 % of bytes hit, both ways: half flipped by a bit, half lost
    async for site in simulated_site(tmp_path, line=LINE, noise=0.005, drop=0.005, seed=4):
        yield site


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async for site in simulated_site(tmp_path):
        yield site


async def read_cycles(driver: ModbusDriver, cycles: int) -> Recorder:
    record = Recorder(driver)
    names = list(driver.catalogue())
    async with running(driver, record):
        await wait_until(
            lambda: all(record.polled()[n] >= cycles for n in names),
            f"{cycles} polls of every device",
            timeout=60,
        )
    return record


@pytest.mark.parametrize("bus", ["simulated", pytest.param("hardware", marks=pytest.mark.hardware)])
async def test_a_clean_line_reads_every_device_without_errors(bus: str, tmp_path: Path) -> None:
    if bus == "hardware":
        if HARDWARE_PORT is None:
            pytest.skip("set CITYEDGE_RTU_PORT (+ CITYEDGE_RTU_BAUD, CITYEDGE_RTU_UNITS)")
        driver = make_driver(hardware_table())
        record = await read_cycles(driver, 5)
    else:
        if HARDWARE_PORT is not None:
            pytest.skip("CITYEDGE_RTU_PORT is set: the real bus is read instead")
        async for site in simulated_site(tmp_path, line=LINE):  # paced at 19200 baud
            # no error may show: a reply timeout no loaded machine reaches (the slaves
            # answer from this process's event loop)
            driver = make_driver(site.table(line={"timeout": 2.0}, poll_interval=0.3, retries=0))
            record = await read_cycles(driver, 5)
            for name, device in ((n, site.cabinet.device(n)) for n in site.cabinet.units):
                assert (
                    site.cabinet.read_requests(name)
                    == len(device.profile.requests) * (record.polled()[name])
                ), name  # the planned requests, nothing more, nothing lost
    for name, info in driver.catalogue().items():
        profile = resolve_profile(info.device_type)
        assert {r.point for r in record.readings if r.device == name} == set(profile.points)
        health = record.health(name)
        assert health.errors == {} and health.state is DeviceState.UP, (name, health)
    line = record.health(f"{driver.name}{BUS_SUFFIX}")
    assert line.errors == {} and line.state is DeviceState.UP
    report = driver.line_report()
    assert report is not None and report.transactions == line.requests > 0
    # bytes take their wire time: the line cannot beat its own ceiling
    assert 0 < report.of_max <= 1.05, line.detail


@SIMULATED
async def test_a_noisy_line_counts_errors_and_still_reads_every_device(
    noisy_site: Site,
) -> None:
    interval = 0.5
    driver = make_driver(noisy_site.table(poll_interval=interval, retries=3, backoff_max=1.0))
    record = await read_cycles(driver, 12)
    names = list(driver.catalogue())
    stats = noisy_site.cable.stats
    hit = sum(d.corrupted + d.dropped for d in (stats.to_devices, stats.to_gateway))
    sent = stats.to_devices.bytes + stats.to_gateway.bytes
    assert 0.005 < hit / sent < 0.02, stats  # ~1 % of the bytes were hit

    errors: dict[str, int] = {}
    for name in names:
        for reason, count in record.health(name).errors.items():
            errors[reason] = errors.get(reason, 0) + count
    assert sum(errors.values()) > 0 and set(errors) <= {"crc", "truncated", "timeout", "decode"}
    assert errors.get("crc", 0) + errors.get("truncated", 0) > 0, errors

    # every cycle (a round of the rota) polled every device once, and read it:
    # retries get every poll through the noise
    rounds = [record.polls[i : i + len(names)] for i in range(0, len(record.polls), len(names))]
    for n, cycle in enumerate(rounds[:-1]):
        assert sorted(p.device for p in cycle) == sorted(names), (n, cycle)
        assert all(p.readings for p in cycle), (n, cycle)
    for name in names:
        profile = resolve_profile(driver.catalogue()[name].device_type)
        assert {r.point for r in record.readings if r.device == name} == set(profile.points)
    # nothing was decoded from a damaged frame: counters only ever move forward
    counters = [
        r.value
        for r in record.readings
        if r.device == "traffic-controller-1" and r.point == "cycle_counter"
    ]
    assert counters == sorted(counters)


@SIMULATED
async def test_unplugged_adapter_then_replugged(site: Site, tmp_path: Path) -> None:
    driver = make_driver(site.table(poll_interval=0.2, retries=0, backoff_max=0.4))
    record = Recorder(driver)
    names = list(driver.catalogue())
    line = f"junction{BUS_SUFFIX}"
    lamps: list[Reading] = []

    async def street_emit(items: Any) -> None:
        lamps.extend(i for i in items if isinstance(i, Reading))

    # the rest of the agent: a Modbus TCP street polled by another driver
    async with ModbusStreet(lampposts=1, meters=0, seed=2) as street:
        street_driver = make_driver(street.driver_tables("street", poll_interval=0.2))
        street_task = asyncio.create_task(street_driver.run(street_emit))
        try:
            with capture_logs() as logs:
                async with running(driver, record):
                    await wait_until(
                        lambda: all(record.polled()[n] >= 2 for n in names), "first polls"
                    )
                    await site.cable.unplug()
                    await wait_until(
                        lambda: all(record.state(n) is DeviceState.DOWN for n in names),
                        "every device on the line DOWN",
                    )
                    for name in names:
                        detail = record.health(name).detail
                        assert detail.startswith(f"port {site.cable.gateway_end}: "), detail
                        assert "unplugged?" in detail or "hung up" in detail, detail
                    assert record.state(line) is DeviceState.DOWN
                    lamps_before = len(lamps)
                    await wait_until(
                        lambda: len(lamps) >= lamps_before + 3 * 19, "the street keeps being read"
                    )
                    assert not street_task.done()

                    site.cable.plug()
                    await wait_until(
                        lambda: all(record.state(n) is DeviceState.UP for n in [*names, line]),
                        "recovery once the adapter is back",
                        timeout=10.0,  # reopen backoff is at most 0.4 s: well within
                    )
                    polled = record.polled()
                    await wait_until(
                        lambda: all(record.polled()[n] >= polled[n] + 2 for n in names),
                        "polls again",
                    )
        finally:
            street_task.cancel()
            await asyncio.gather(street_task, return_exceptions=True)
    for name in names:
        assert record.changes(name) == [True, False], name
    lost = record.health(line).errors
    assert set(lost) <= {"hangup", "absent", "io", "read_failed"} and sum(lost.values()) >= 1, lost
    downs = [e for e in logs if e["event"] == "modbus.line_down" and e["log_level"] == "warning"]
    assert len(downs) == 1, "the loss logged loudly once, the retries quietly"
    assert any(e["event"] == "modbus.line_up" for e in logs)
    assert all(h.state is DeviceState.UP for h in street_driver.health())
    assert site.cable.plugs == 2
