"""The simulated traffic controller and junction cabinet: cycles, plans taken at
the cycle's end, faults, and the cabinet's layout as a driver config needs it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cityedge.drivers.modbus.config import RtuSection, Section
from cityedge.drivers.modbus.errors import ExceptionReply
from cityedge.drivers.modbus.points import RegisterKind
from cityedge.drivers.modbus.profile import resolve_profile
from cityedge.street.modbus import JunctionCabinet, TrafficController, TrafficMode

H = RegisterKind.HOLDING


def controller(speed: float = 1.0) -> TrafficController:
    return TrafficController(
        "tc", resolve_profile("traffic-controller"), unit=1, seed=5, speed=speed
    )


async def test_the_cycle_runs_and_a_new_plan_starts_at_its_end() -> None:
    tc = controller(speed=2000.0)  # 1 real ms = 2 simulated s: a 60 s cycle in 30 ms
    count = int(tc.get("cycle_counter"))
    assert tc.get("active_plan") == 1 and tc.get("cycle_length") == 60
    tc.write(H, 1, [4])  # plan 4 (event traffic, 120 s cycles), as the central writes it
    assert tc.get("plan") == 4 and tc.get("active_plan") == 1  # not yet: mid-cycle
    await asyncio.sleep(0.05)
    tc.update()
    assert int(tc.get("cycle_counter")) > count
    assert tc.get("active_plan") == 4 and tc.get("cycle_length") == 120
    assert 0 <= int(tc.get("cycle_second")) < 120


async def test_flashing_and_dark_stop_the_cycle() -> None:
    tc = controller(speed=2000.0)
    tc.write(H, 0, [TrafficMode.DARK])
    count = tc.get("cycle_counter")
    await asyncio.sleep(0.05)
    tc.update()
    assert tc.get("cycle_counter") == count and tc.get("mode") == TrafficMode.DARK


def test_faults_set_their_bits_and_a_conflict_forces_flashing() -> None:
    tc = controller()
    assert not any(tc.get(f) for f in ("lamp_failure", "conflict", "door_open", "power_failure"))
    tc.inject("door_open")
    assert tc.get("door_open") is True and tc.get("mode") == TrafficMode.NORMAL
    tc.inject("conflict")
    assert tc.get("conflict") is True and tc.get("mode") == TrafficMode.FLASHING_AMBER
    tc.inject("conflict", active=False)
    assert tc.get("conflict") is False
    assert tc.get("mode") == TrafficMode.FLASHING_AMBER  # stays until someone resets it
    with pytest.raises(KeyError, match="no fault 'fire'"):
        tc.inject("fire")


def test_the_controller_refuses_what_it_would_refuse() -> None:
    tc = controller()
    with pytest.raises(ExceptionReply) as manual:
        tc.write(H, 0, [TrafficMode.MANUAL])  # the police panel is in the cabinet
    assert manual.value.code == 3 and tc.get("mode") == TrafficMode.NORMAL
    with pytest.raises(ExceptionReply) as plan:
        tc.write(H, 1, [9])  # no plan 9
    assert plan.value.code == 3 and tc.get("plan") == 1
    with pytest.raises(ExceptionReply) as measured:
        tc.write(RegisterKind.INPUT, 0, [0])
    assert measured.value.code == 2
    for i in range(1, 5):
        assert 0.0 <= float(tc.get(f"occupancy_{i}")) <= 100.0


def test_the_cabinet_as_a_driver_table() -> None:
    cabinet = JunctionCabinet(Path("/dev/null-device-end"), controllers=2, meters=1)  # not started
    assert cabinet.units == {
        "traffic-controller-1": (1, "traffic-controller"),
        "traffic-controller-2": (2, "traffic-controller"),
        "junction-meter": (3, "energy-meter"),
    }
    table = cabinet.driver_table("junction", "/tmp/ttyGW", line={"timeout": 0.2}, poll_interval=0.5)
    section = Section.parse(table)
    assert isinstance(section, RtuSection)
    assert str(section.line) == "19200 8N2" and section.timeout == 0.2
    assert {d.poll_interval for d in section.devices} == {0.5}
    # the meter measures the signal heads: less when a junction goes dark
    meter = cabinet.device("junction-meter")
    running = float(meter.get("active_power"))
    cabinet.controller("traffic-controller-1").put("mode", TrafficMode.DARK)
    meter.update()
    assert float(meter.get("active_power")) < running - 300
