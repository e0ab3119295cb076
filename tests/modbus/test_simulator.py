"""The simulated street itself: physics, device-side checks, and the demo's layout."""

from __future__ import annotations

import asyncio

import pytest

from cityedge.drivers.modbus.errors import ExceptionReply
from cityedge.drivers.modbus.points import RegisterKind
from cityedge.drivers.modbus.profile import resolve_profile
from cityedge.gateway.config import load_config
from cityedge.sdk.driver import SHIPPED_CONFIG_DIR
from cityedge.street.modbus import EnergyMeter, Fault, Lamppost, ModbusStreet

H = RegisterKind.HOLDING


def lamppost(speed: float = 1.0) -> Lamppost:
    return Lamppost("lamppost-x", resolve_profile("lamppost"), seed=3, speed=speed)


def test_power_follows_switch_and_dimming() -> None:
    lamp = lamppost()
    rated = float(lamp.get("rated_power"))
    lamp.put("dimming", 50)
    lamp.update()
    assert float(lamp.get("power")) == pytest.approx(rated * 0.5, rel=0.06)
    lamp.put("lamp_on", False)
    lamp.update()
    assert lamp.get("power") == 0.4  # standby
    lamp.put("lamp_on", True)
    lamp.lamp_failed = True
    lamp.update()
    assert lamp.get("power") == 0.4 and lamp.get("lamp_failure") is True


async def test_counters_accumulate() -> None:
    lamp = lamppost(speed=3_600_000)  # one real millisecond is a simulated hour
    energy, hours = float(lamp.get("energy")), float(lamp.get("burning_hours"))
    await asyncio.sleep(0.05)
    lamp.update()
    assert float(lamp.get("energy")) > energy and float(lamp.get("burning_hours")) > hours


def test_device_side_write_checks() -> None:
    lamp = lamppost()
    with pytest.raises(ExceptionReply) as read_only:
        lamp.write(H, 2, [100])  # power is measured, not set
    assert read_only.value.code == 2
    with pytest.raises(ExceptionReply) as out_of_range:
        lamp.write(H, 1, [101])  # dimming over 100 %
    assert out_of_range.value.code == 3 and lamp.get("dimming") == 80  # unchanged
    with pytest.raises(ExceptionReply) as past_the_end:
        lamp.read(H, 20, 5)
    assert past_the_end.value.code == 2
    lamp.write(H, 0, [0])
    assert lamp.get("lamp_on") is False and lamp.writes == 3 and lamp.reads == 1


def test_meter_measures_the_street() -> None:
    loads = [100.0, 200.0, 300.0]
    meter = EnergyMeter(
        "m", resolve_profile("energy-meter"), lambda: (loads[0], loads[1], loads[2])
    )
    assert meter.get("active_power") == pytest.approx(750.0)  # + 50 W cabinet per phase
    assert meter.get("power_l3") == pytest.approx(350.0)
    assert 225 < float(meter.get("voltage_l1")) < 237


async def test_street_layout_matches_the_demo_config() -> None:
    demo = load_config(SHIPPED_CONFIG_DIR / "demo.toml").config.drivers["modbus"][0]
    street = ModbusStreet(lampposts=8, meters=1, base_port=15021)  # not started: layout only
    expected = [(d.name, d.profile.type, d.port) for d in demo.devices]
    assert [(d.name, d.profile, d.port) for d in street.devices] == expected


async def test_faults_change_what_the_device_sends() -> None:
    async with ModbusStreet(lampposts=1, meters=0) as street:
        device = street.device("lamppost-001")
        reply = bytes.fromhex("00010000000701030400010002")  # 2 registers
        assert device.reply(reply) == reply
        street.set_fault("lamppost-001", Fault.SILENT)
        assert device.reply(reply) == b""
        street.set_fault("lamppost-001", Fault.GARBAGE)
        assert device.reply(reply) == bytes.fromhex("000100000005010302dead")
        street.set_fault("lamppost-001", Fault.EXCEPTION)
        with pytest.raises(ExceptionReply):
            device.read(H, 0, 1)
        street.set_fault("lamppost-001", None)
        assert device.read(H, 0, 1) == [1] and device.reply(reply) == reply
        (entry,) = street.driver_tables(poll_interval=2.0)["devices"]
        assert entry["poll_interval"] == 2.0 and entry["port"] == street.devices[0].port > 0
