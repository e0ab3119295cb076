"""The BLE driver end to end, with bleak faked at its boundary only (tests/ble/fake_bleak.py)."""

from __future__ import annotations

import asyncio
import io
import json
import random
from collections.abc import Callable

import pytest
from bleak.exc import BleakDBusError, BleakError

from cityedge.drivers.ble.bthome import encode, encrypt
from cityedge.drivers.ble.driver import ADAPTER_DOWN, SILENT, BleDriver
from cityedge.drivers.ble.gatt import CHARACTERISTICS
from cityedge.sdk.model import (
    DeviceHealth,
    DeviceRejected,
    DeviceState,
    DeviceUnreachable,
    PointNotWritable,
    Severity,
    UnknownDevice,
    UnknownPoint,
)
from tests.ble.fake_bleak import FakeAir, FakeGatt, FakeGattDevice
from tests.ble.support import PLAIN, SEALED, SEALED_KEY, Sink, running, until

MakeDriver = Callable[..., BleDriver]
MAC = bytes.fromhex(SEALED.replace(":", ""))
KEY = bytes.fromhex(SEALED_KEY)


def thermo_frame(temperature: float, humidity: float, packet_id: int) -> bytes:
    return encode([(0x02, temperature), (0x03, humidity)], packet_id=packet_id)


def bin_frame(counter: int, *, opening: bool = True, battery: int = 88) -> bytes:
    plain = encode([(0x01, battery), (0x11, opening), (0x3F, -12.5)])
    return encrypt(plain, mac=MAC, bindkey=KEY, counter=counter)


def temperature_is(sink: Sink, value: float) -> Callable[[], bool]:
    return lambda: sink.values("thermo-12").get("temperature") == value


def health_of(driver: BleDriver, device: str) -> DeviceHealth:
    return next(h for h in driver.health() if h.device == device)


def events(structlog_output: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in structlog_output.getvalue().splitlines()]


async def test_configured_sensors_become_readings(make_driver: MakeDriver, air: FakeAir) -> None:
    driver = make_driver()
    async with running(driver) as sink:
        await until(lambda: bool(air.running))
        air.broadcast(PLAIN, bthome=thermo_frame(21.78, 60.6, packet_id=1), rssi=-71)
        air.broadcast(PLAIN, bthome=thermo_frame(21.78, 60.6, packet_id=1), rssi=-70)  # repeat
        air.broadcast(SEALED, bthome=bin_frame(1000), rssi=-80)
        air.broadcast(SEALED, bthome=bin_frame(1000), rssi=-80)  # repeat
        await until(lambda: len(sink.readings) >= 7)
        await asyncio.sleep(0.05)  # would a repeat slip through? give it the chance
        assert sink.values("thermo-12") == {"temperature": 21.78, "humidity": 60.6, "rssi": -71}
        assert sink.values("bin-12") == {"battery": 88, "opening": True, "rotation": -12.5,
                                         "rssi": -80}  # fmt: skip
        assert len(sink.readings) == 7  # the repeats were dropped
        units = {r.point: r.unit for r in sink.readings}
        assert units["temperature"] == "°C" and units["rotation"] == "°" and units["rssi"] == "dBm"

        thermo = health_of(driver, "thermo-12")
        assert thermo.state is DeviceState.UP and thermo.requests == 1
        assert thermo.detail == "rssi -70 dBm"
        cached = await driver.read("thermo-12", ["temperature"])
        assert [(r.point, r.value) for r in cached] == [("temperature", 21.78)]
        assert {r.point for r in await driver.read("bin-12")} == {"battery", "opening",
                                                                  "rotation", "rssi"}  # fmt: skip
        assert "opening" in driver.catalogue()["bin-12"].points


async def test_replay_downgrade_and_wrong_key_are_counted_and_logged_once(
    make_driver: MakeDriver, air: FakeAir, structlog_output: io.StringIO
) -> None:
    driver = make_driver()
    async with running(driver) as sink:
        await until(lambda: bool(air.running))
        air.broadcast(SEALED, bthome=bin_frame(500))
        air.broadcast(SEALED, bthome=bin_frame(499))  # older counter: a recording replayed
        air.broadcast(SEALED, bthome=encode([(0x11, False)], packet_id=3))  # forged in clear
        wrong = encrypt(encode([(0x11, False)]), mac=MAC, bindkey=bytes(16), counter=600)
        air.broadcast(SEALED, bthome=wrong)
        air.broadcast(SEALED, bthome=b"\x41\x02\x00")  # cut short
        await until(lambda: sum(health_of(driver, "bin-12").errors.values()) >= 4)
        errors = health_of(driver, "bin-12").errors
        assert errors == {"replay": 1, "downgrade": 1, "decrypt": 1, "too_short": 1}
        await until(lambda: "opening" in sink.values("bin-12"))
        assert sink.values("bin-12")["opening"] is True  # no forged value got through
        air.broadcast(SEALED, bthome=bin_frame(501, opening=False))
        await until(lambda: sink.values("bin-12")["opening"] is False)

    logged = [e for e in events(structlog_output) if e.get("device") == "bin-12"]
    rejected = [e for e in logged if e["event"] == "ble.frame_rejected"]
    assert [e["level"] for e in rejected] == ["warning", "debug", "debug", "debug"]
    assert rejected[0]["reason"] == "replay"
    assert any(e["event"] == "ble.sensor_recovered" and e["level"] == "info" for e in logged)
    assert all(SEALED_KEY not in json.dumps(e) for e in events(structlog_output))


async def test_a_frame_with_a_reserved_info_bit_is_refused_with_its_reason(
    make_driver: MakeDriver, air: FakeAir, structlog_output: io.StringIO
) -> None:
    driver = make_driver()
    async with running(driver) as sink:
        await until(lambda: bool(air.running))
        # bit 1 set, the sensor's MAC first: decoded as objects this was -294 °C
        odd = bytes([0x42]) + bytes.fromhex("a4c138b2f05d") + thermo_frame(21.0, 50.0, 1)[1:]
        air.broadcast(PLAIN, bthome=odd)
        await until(lambda: health_of(driver, "thermo-12").errors.get("reserved") == 1)
        air.broadcast(PLAIN, bthome=thermo_frame(21.5, 50.0, packet_id=2))
        await until(temperature_is(sink, 21.5))
        taken = [r.value for r in sink.readings if r.point == "temperature"]
        assert taken == [21.5]  # the odd frame gave no value at all
    [rejected] = [e for e in events(structlog_output) if e["event"] == "ble.frame_rejected"]
    assert rejected["reason"] == "reserved" and "reserved bit 1" in str(rejected["detail"])


async def test_garbage_from_a_configured_sensor_is_counted_never_raised(
    make_driver: MakeDriver, air: FakeAir
) -> None:
    rng = random.Random(7)
    driver = make_driver()
    async with running(driver) as sink:
        await until(lambda: bool(air.running))
        for _ in range(500):
            frame = bytes([rng.choice([0x40, 0x41, 0x44, 0x45, rng.randrange(256)])])
            air.broadcast(PLAIN, bthome=frame + rng.randbytes(rng.randint(0, 30)))
            air.broadcast(SEALED, bthome=frame + rng.randbytes(rng.randint(0, 30)))
        air.broadcast(PLAIN, bthome=thermo_frame(12.5, 40.0, packet_id=77))
        await until(lambda: sink.values("thermo-12").get("temperature") == 12.5)
        errors = {**health_of(driver, "thermo-12").errors}
        for reason, count in health_of(driver, "bin-12").errors.items():
            errors[reason] = errors.get(reason, 0) + count
        assert sum(errors.values()) > 300 and "internal" not in errors
        assert air.running  # the scanner never noticed


async def test_silent_sensor_raises_an_alarm_and_clears_it_on_return(
    make_driver: MakeDriver, air: FakeAir
) -> None:
    driver = make_driver(
        devices=[{"name": "thermo-12", "address": PLAIN, "interval": 0.05, "silent_after": 2}]
    )
    async with running(driver) as sink:
        await until(lambda: bool(air.running))
        air.broadcast(PLAIN, bthome=thermo_frame(20.0, 50.0, packet_id=1))
        await until(lambda: any(e.kind == SILENT for e in sink.events))
        raised = next(e for e in sink.events if e.kind == SILENT)
        assert raised.source == "thermo-12" and raised.severity is Severity.ALARM
        assert raised.active is True and raised.data["expected_interval_s"] == 0.05
        health = health_of(driver, "thermo-12")
        assert health.state is DeviceState.DOWN
        assert "no valid frame for" in (health.detail or "")
        assert len([e for e in sink.events if e.kind == SILENT]) == 1  # raised once, not per tick

        air.broadcast(PLAIN, bthome=thermo_frame(20.5, 50.0, packet_id=2))
        await until(lambda: any(e.kind == SILENT and e.active is False for e in sink.events))
        cleared = [e for e in sink.events if e.kind == SILENT][1]
        assert cleared.severity is Severity.ALARM and cleared.source == "thermo-12"
        assert health_of(driver, "thermo-12").state is DeviceState.UP


async def test_a_sensor_never_heard_is_silent_too(make_driver: MakeDriver, air: FakeAir) -> None:
    driver = make_driver(
        devices=[{"name": "thermo-12", "address": PLAIN, "interval": 0.05, "silent_after": 2}]
    )
    async with running(driver) as sink:
        await until(lambda: any(e.kind == SILENT and e.active for e in sink.events))


async def test_button_presses_become_events(make_driver: MakeDriver, air: FakeAir) -> None:
    driver = make_driver()
    async with running(driver) as sink:
        await until(lambda: bool(air.running))
        air.broadcast(PLAIN, bthome=encode([(0x3A, 0)], packet_id=1) + b"\x3a\x02")
        await until(lambda: any(e.kind == "ble.button" for e in sink.events))
        event = next(e for e in sink.events if e.kind == "ble.button")
        assert event.source == "thermo-12" and event.data == {"point": "button_2",
                                                              "action": "double_press"}  # fmt: skip


async def test_write_and_unknown_names_are_refused(make_driver: MakeDriver) -> None:
    driver = make_driver()
    with pytest.raises(PointNotWritable, match=r"thermo-12\.temperature"):
        await driver.write("thermo-12", "temperature", 3)
    with pytest.raises(UnknownDevice, match="lamppost-1"):
        await driver.write("lamppost-1", "dimming", 3)
    with pytest.raises(UnknownDevice):
        await driver.read("phone")
    with pytest.raises(UnknownPoint, match=r"thermo-12\.pin"):
        await driver.read("thermo-12", ["pin"])
    with pytest.raises(DeviceUnreachable, match="nothing heard"):
        await driver.read("thermo-12")
    with pytest.raises(DeviceUnreachable, match="no humidity heard"):
        await driver.read("thermo-12", ["humidity"])


# --- GATT maintenance reads ------------------------------------------------------------

BATTERY_UUID = CHARACTERISTICS["battery_level"][0]
FIRMWARE_UUID = CHARACTERISTICS["firmware"][0]
MODEL_UUID = CHARACTERISTICS["model"][0]


async def test_gatt_read_on_demand_one_connection_at_a_time(
    make_driver: MakeDriver, air: FakeAir, gatt: FakeGatt
) -> None:
    gatt.devices[PLAIN] = FakeGattDevice({BATTERY_UUID: b"\x57", FIRMWARE_UUID: b"2.1.0\x00\x00"})
    gatt.devices[SEALED] = FakeGattDevice({BATTERY_UUID: b"\x20", MODEL_UUID: b"BLU Door"})
    driver = make_driver()
    async with running(driver):
        await until(lambda: bool(air.running))
        first, second = await asyncio.gather(
            driver.read("thermo-12", ["battery_level", "firmware"]),
            driver.read("bin-12", ["battery_level", "model"]),
        )
    assert [(r.point, r.value, r.unit) for r in first] == [("battery_level", 87, "%"),
                                                           ("firmware", "2.1.0", None)]  # fmt: skip
    assert [(r.point, r.value) for r in second] == [("battery_level", 32), ("model", "BLU Door")]
    assert gatt.connects == 2 and gatt.max_in_session == 1  # the adapter lock held
    assert gatt.disconnects == 2


async def test_gatt_timeout_while_the_scanner_keeps_delivering(
    make_driver: MakeDriver, air: FakeAir, gatt: FakeGatt
) -> None:
    gatt.devices[PLAIN] = FakeGattDevice(hang=True)  # never answers
    driver = make_driver(gatt_timeout=0.5)
    async with running(driver) as sink:
        await until(lambda: bool(air.running))
        pending = asyncio.create_task(driver.read("thermo-12", ["battery_level"]))
        for packet_id in range(1, 6):
            air.broadcast(PLAIN, bthome=thermo_frame(20.0 + packet_id, 50.0, packet_id))
            await until(temperature_is(sink, 20.0 + packet_id))
        assert not pending.done()  # readings flowed while the read hung
        with pytest.raises(DeviceUnreachable, match=r"no GATT answer within 0\.5 s"):
            await asyncio.wait_for(pending, timeout=5.0)
        assert gatt.disconnects == 1  # the half-open connection was torn down
        assert health_of(driver, "thermo-12").errors == {"gatt_unreachable": 1}
        air.broadcast(PLAIN, bthome=thermo_frame(30.0, 50.0, 9))
        await until(lambda: sink.values("thermo-12").get("temperature") == 30.0)


async def test_gatt_missing_characteristic_and_bad_value_are_rejections(
    make_driver: MakeDriver, air: FakeAir, gatt: FakeGatt
) -> None:
    gatt.devices[PLAIN] = FakeGattDevice({BATTERY_UUID: b"\xfa"})
    driver = make_driver()
    async with running(driver):
        await until(lambda: bool(air.running))
        with pytest.raises(DeviceRejected, match="2a26"):
            await driver.read("thermo-12", ["firmware"])
        with pytest.raises(DeviceRejected, match="battery_level: expected one byte 0-100"):
            await driver.read("thermo-12", ["battery_level"])
        with pytest.raises(DeviceUnreachable, match="not found"):
            await driver.read("bin-12", ["battery_level"])  # no such device in range


async def test_scheduled_gatt_reads_retry_then_emit(
    make_driver: MakeDriver, air: FakeAir, gatt: FakeGatt
) -> None:
    schedule = {
        "every": 3600.0,
        "points": ["battery_level"],
        "retries": 5,
        "retry_delay": 0.01,
        "first_within": 0.01,
    }
    driver = make_driver(
        devices=[{"name": "thermo-12", "address": PLAIN, "gatt": schedule}],
    )
    async with running(driver) as sink:
        await until(lambda: gatt.connects >= 2)  # first tries fail: not in range
        gatt.devices[PLAIN] = FakeGattDevice({BATTERY_UUID: b"\x42"})
        await until(lambda: "battery_level" in sink.values("thermo-12"), timeout=10)
    assert sink.values("thermo-12")["battery_level"] == 66
    errors = health_of(driver, "thermo-12").errors
    assert errors["gatt_unreachable"] >= 2


# --- the adapter ------------------------------------------------------------------------


async def test_no_adapter_then_recovery(
    make_driver: MakeDriver, air: FakeAir, structlog_output: io.StringIO
) -> None:
    air.unavailable = FileNotFoundError(
        2, "No such file or directory", "/run/dbus/system_bus_socket"
    )
    driver = make_driver()
    async with running(driver) as sink:
        await until(lambda: len(air.start_attempts) >= 3)
        adapter = health_of(driver, "ble-cabinet-12:hci0")
        assert adapter.state is DeviceState.DOWN
        assert "system_bus_socket" in (adapter.detail or "")
        assert "is D-Bus running" in (adapter.detail or "")
        assert "retrying in" in (adapter.detail or "")
        thermo = health_of(driver, "thermo-12")
        assert thermo.state is DeviceState.DOWN
        assert (thermo.detail or "").startswith("no radio: adapter hci0")
        with pytest.raises(DeviceUnreachable, match="no radio"):
            await driver.read("thermo-12", ["battery_level"])

        air.unavailable = BleakError("adapter 'hci0' not found")  # still no luck, other reason
        await until(lambda: "not found" in (health_of(driver, "ble-cabinet-12:hci0").detail or ""))
        air.unavailable = None
        await until(lambda: health_of(driver, "ble-cabinet-12:hci0").state is DeviceState.UP)
        air.broadcast(PLAIN, bthome=thermo_frame(19.0, 40.0, 1))
        await until(lambda: "temperature" in sink.values("thermo-12"))

    alarms = [e for e in sink.events if e.kind == ADAPTER_DOWN]
    assert [e.active for e in alarms] == [True, False]  # raised once, cleared once
    assert alarms[0].severity is Severity.ALARM and alarms[0].data["adapter"] == "hci0"
    logged = [e["event"] for e in events(structlog_output)]
    assert logged.count("ble.adapter_down") == 1  # loud once, quiet after
    assert logged.count("ble.adapter_still_down") >= 2
    assert "ble.adapter_recovered" in logged


async def test_bluez_restart_mid_run_is_noticed_and_survived(
    make_driver: MakeDriver, air: FakeAir
) -> None:
    driver = make_driver(radio_silence_restart=0.1)
    async with running(driver) as sink:
        await until(lambda: bool(air.running))
        air.broadcast(PLAIN, bthome=thermo_frame(18.0, 40.0, 1))
        await until(lambda: "temperature" in sink.values("thermo-12"))
        # BlueZ goes away: the scanner just goes quiet, and restarting it fails for a while.
        air.unavailable = BleakDBusError(
            "org.freedesktop.DBus.Error.ServiceUnknown",
            ["The name org.bluez was not provided by any .service files"],
        )
        air.vanish()
        await until(lambda: health_of(driver, "ble-cabinet-12:hci0").state is DeviceState.DOWN)
        detail = health_of(driver, "ble-cabinet-12:hci0").detail or ""
        assert "org.freedesktop.DBus.Error.ServiceUnknown: The name org.bluez" in detail
        air.unavailable = None
        await until(lambda: bool(air.running))
        air.broadcast(PLAIN, bthome=thermo_frame(18.5, 40.0, 2))
        await until(lambda: sink.values("thermo-12")["temperature"] == 18.5)
    assert health_of(driver, "ble-cabinet-12:hci0").errors["silent_restart"] >= 1
    assert [e.active for e in sink.events if e.kind == ADAPTER_DOWN] == [True, False]


async def test_passive_scan_with_the_bthome_pattern(make_driver: MakeDriver, air: FakeAir) -> None:
    driver = make_driver(scanning="passive")
    async with running(driver) as sink:
        await until(lambda: bool(air.running))
        (scanner,) = air.running
        assert scanner.mode == "passive"
        assert scanner.bluez["adapter"] == "hci0" and scanner.bluez["or_patterns"]
        # BlueZ's monitor only hands over BTHome frames: a phone beacon never reaches us.
        assert air.broadcast("12:34:56:78:9A:BC", manufacturer_data={0x004C: b"\x10\x05"}) == 0
        assert air.broadcast(PLAIN, bthome=thermo_frame(17.0, 40.0, 1)) == 1
        await until(lambda: "temperature" in sink.values("thermo-12"))
        assert health_of(driver, "ble-cabinet-12:hci0").detail == "scanning (passive) on hci0"


async def test_passive_unavailable_falls_back_to_active(
    make_driver: MakeDriver, air: FakeAir, structlog_output: io.StringIO
) -> None:
    air.passive_supported = False
    driver = make_driver(scanning="passive")
    async with running(driver) as sink:
        await until(lambda: bool(air.running))
        assert air.running[0].mode == "active"
        assert air.start_attempts == ["passive", "active"]
        air.broadcast(PLAIN, bthome=thermo_frame(17.0, 40.0, 1))
        await until(lambda: "temperature" in sink.values("thermo-12"))
    fallback = [e for e in events(structlog_output) if e["event"] == "ble.passive_unavailable"]
    assert len(fallback) == 1 and "org.bluez.Error.NotSupported" in str(fallback[0]["error"])
    assert health_of(driver, "ble-cabinet-12:hci0").state is DeviceState.UP


async def test_a_restarted_sensor_is_accepted_again_after_falling_silent(
    make_driver: MakeDriver, air: FakeAir
) -> None:
    sealed = {"name": "bin-12", "address": SEALED, "bindkey": SEALED_KEY}
    driver = make_driver(devices=[{**sealed, "interval": 0.2, "silent_after": 2}])
    async with running(driver) as sink:
        await until(lambda: bool(air.running))
        air.broadcast(SEALED, bthome=bin_frame(1000, battery=80))
        await until(lambda: sink.values("bin-12").get("battery") == 80)
        air.broadcast(SEALED, bthome=bin_frame(3, battery=79))  # counter went back: refused...
        await until(lambda: any(e.kind == SILENT and e.active for e in sink.events))
        assert health_of(driver, "bin-12").errors["replay"] == 1
        air.broadcast(SEALED, bthome=bin_frame(4, battery=79))  # ...until it fell silent
        await until(lambda: sink.values("bin-12").get("battery") == 79)
        assert [e.active for e in sink.events if e.kind == SILENT] == [True, False]


async def test_two_drivers_on_one_adapter_share_its_lock(
    make_driver: MakeDriver, gatt: FakeGatt
) -> None:
    gatt.devices[PLAIN] = FakeGattDevice({BATTERY_UUID: b"\x10"})
    gatt.devices[SEALED] = FakeGattDevice({BATTERY_UUID: b"\x11"})
    first = make_driver(devices=[{"name": "thermo-12", "address": PLAIN}])
    second = make_driver(name="ble-cabinet-12b", devices=[{"name": "bin-12", "address": SEALED}])
    readings = await asyncio.gather(
        *(d.read(n, ["battery_level"]) for d, n in [(first, "thermo-12"), (second, "bin-12")] * 3)
    )
    assert [r[0].value for r in readings] == [16, 17] * 3
    assert gatt.connects == 6 and gatt.max_in_session == 1
