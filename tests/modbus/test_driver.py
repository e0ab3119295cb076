"""The driver against a simulated street of real pymodbus servers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from cityedge.drivers.modbus import Section, build
from cityedge.drivers.modbus.answers import BAD_ANSWER_EVENT, CLEAR_AFTER
from cityedge.drivers.modbus.codec import encode
from cityedge.drivers.modbus.driver import ModbusDriver
from cityedge.drivers.modbus.planner import plan
from cityedge.drivers.modbus.points import RegisterKind
from cityedge.drivers.modbus.profile import resolve_profile
from cityedge.sdk.driver import Driver, DriverEnv
from cityedge.sdk.health import UNREACHABLE_EVENT
from cityedge.sdk.model import (
    DeviceRejected,
    DeviceState,
    DeviceUnreachable,
    Event,
    InvalidValue,
    PointNotWritable,
    Reading,
    Severity,
    UnknownDevice,
    UnknownPoint,
)
from cityedge.street.modbus import Fault, ModbusStreet, SimulatedDevice
from cityedge.street.modbus_server import DeviceServer

pytestmark = pytest.mark.timeout(90)

FAST = {"poll_interval": 0.2, "timeout": 0.4, "retries": 0, "backoff_max": 0.4}


def make_driver(street: ModbusStreet, **settings: Any) -> ModbusDriver:
    section = Section.parse(street.driver_tables("street", **{**FAST, **settings}))
    driver = build(
        section, DriverEnv(state_dir=Path("/nonexistent"), config_dir=Path("/nonexistent"))
    )
    assert isinstance(driver, Driver)
    return driver


class Collector:
    """The emit callback: keeps everything, and what the device had counted at each emit."""

    def __init__(self, street: ModbusStreet, driver: ModbusDriver) -> None:
        self.street = street
        self.driver = driver
        self.readings: list[Reading] = []
        self.events: list[Event] = []
        self.polls: Counter[str] = Counter()
        self.device_reads_at_emit: dict[str, list[int]] = defaultdict(list)

    async def __call__(self, items: Sequence[Reading | Event]) -> None:
        names = {i.device if isinstance(i, Reading) else i.source for i in items}
        assert len(names) == 1, "one emit carries one device's poll"
        name = names.pop()
        self.polls[name] += 1
        self.device_reads_at_emit[name].append(self.street.read_requests(name))
        for item in items:
            (self.readings if isinstance(item, Reading) else self.events).append(item)  # type: ignore[arg-type]

    def state(self, device: str) -> DeviceState:
        return next(h.state for h in self.driver.health() if h.device == device)


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            # polling the driver's state: it has no hook to wait on, and this is bounded
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for: {what}") from None


@contextlib.asynccontextmanager
async def running(driver: ModbusDriver, emit: Collector) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(driver.run(emit))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(10):
                await task
        assert task.done()


@pytest.fixture
async def street() -> AsyncIterator[ModbusStreet]:
    async with ModbusStreet(lampposts=20, meters=1, seed=7) as s:
        yield s


async def test_every_point_of_every_device_arrives_in_the_fewest_requests(
    street: ModbusStreet,
) -> None:
    driver = make_driver(street, timeout=2.0)  # no error may show: no timeout a load reaches
    emit = Collector(street, driver)
    names = [d.name for d in street.devices]
    assert len(names) == 21
    async with running(driver, emit):
        await wait_until(lambda: all(emit.polls[n] >= 3 for n in names), "3 polls of each device")

    for name in names:
        profile = street.device(name).profile
        seen = {r.point for r in emit.readings if r.device == name}
        assert seen == set(profile.points), name
        # counted at the simulated device: each poll costs exactly the planned requests
        per_poll = len(plan(profile.points.values(), profile.limits))
        assert per_poll == len(profile.requests)
        counts = emit.device_reads_at_emit[name]
        assert counts == [per_poll * (k + 1) for k in range(len(counts))], name
    assert len(street.device("lamppost-001").profile.requests) == 1  # ONE request per lamppost
    assert all(h.state is DeviceState.UP and not h.errors for h in driver.health())
    assert all(street.write_requests(n) == 0 for n in names)

    sample = next(r for r in emit.readings if r.device == "lamppost-001" and r.point == "energy")
    assert sample.unit == "kWh" and isinstance(sample.value, float)
    assert isinstance(next(r for r in emit.readings if r.point == "switch_count").value, int)


async def test_write_then_read_back(street: ModbusStreet) -> None:
    driver = make_driver(street)
    try:
        await driver.write("lamppost-002", "dimming", 35)
        assert street.register("lamppost-002", "dimming") == 35
        assert street.write_requests("lamppost-002") == 1
        (reading,) = await driver.read("lamppost-002", ["dimming"])
        assert reading.value == 35 and reading.unit == "%"

        await driver.write("lamppost-002", "lamp_on", False)
        power = await driver.read("lamppost-002", ["power", "lamp_on"])
        assert {r.point: r.value for r in power} == {"power": 0.4, "lamp_on": False}

        # rated 40-120 W at 35 % ± noise, once switched back on
        await driver.write("lamppost-002", "lamp_on", True)
        (watts,) = await driver.read("lamppost-002", ["power"])
        rated = street.register("lamppost-002", "rated_power")
        assert isinstance(watts.value, float) and isinstance(rated, int)
        assert watts.value == pytest.approx(rated * 0.35, rel=0.06)
        assert street.register("lamppost-002", "switch_count") == (
            next(r.value for r in await driver.read("lamppost-002", ["switch_count"]))
        )
        assert street.write_requests("lamppost-002") == 3
    finally:
        await driver.aclose()


async def test_write_refusals_send_nothing(street: ModbusStreet) -> None:
    driver = make_driver(street)
    try:
        with pytest.raises(PointNotWritable, match=r"lamppost-001\.energy is read-only"):
            await driver.write("lamppost-001", "energy", 0)
        with pytest.raises(InvalidValue, match="dimming: 150 is above the maximum 100"):
            await driver.write("lamppost-001", "dimming", 150)
        with pytest.raises(InvalidValue, match="expected a number"):
            await driver.write("lamppost-001", "dimming", "bright")
        with pytest.raises(UnknownPoint, match="no point 'brightness' in profile 'lamppost'"):
            await driver.write("lamppost-001", "brightness", 1)
        with pytest.raises(UnknownDevice, match="lamppost-999"):
            await driver.write("lamppost-999", "dimming", 1)
        with pytest.raises(UnknownDevice):
            await driver.read("lamppost-999")
        with pytest.raises(UnknownPoint):
            await driver.read("lamppost-001", ["dimming", "nope"])
        assert street.write_requests("lamppost-001") == 0
        assert street.read_requests("lamppost-001") == 0
    finally:
        await driver.aclose()


async def test_write_failures_from_the_device(street: ModbusStreet) -> None:
    driver = make_driver(street)
    try:
        street.set_fault("lamppost-003", Fault.EXCEPTION)
        with pytest.raises(DeviceRejected, match="exception 4"):
            await driver.write("lamppost-003", "dimming", 50)
        await street.switch_off("lamppost-004")
        with pytest.raises(DeviceUnreachable, match="cannot connect"):
            await driver.write("lamppost-004", "dimming", 50)
        street.set_fault("lamppost-005", Fault.SILENT)
        with pytest.raises(DeviceUnreachable, match=r"no answer.*applied is unknown"):
            await driver.write("lamppost-005", "dimming", 50)
        with pytest.raises(DeviceUnreachable):
            await driver.read("lamppost-005")
        errors = {h.device: h.errors for h in driver.health()}
        assert errors["lamppost-003"] == {"exception-4": 1}
        assert errors["lamppost-004"] == {"connection": 1}
        assert errors["lamppost-005"] == {"timeout": 3}  # the write, its read-back, the read
    finally:
        await driver.aclose()


async def test_dead_devices_go_down_without_slowing_the_others_then_recover(
    street: ModbusStreet,
) -> None:
    # the healthy devices must show no error at all: their replies get a timeout no
    # loaded machine reaches (the street answers in this process's own event loop)
    driver = make_driver(street, timeout=2.0, backoff_max=1.0)
    emit = Collector(street, driver)
    others = [d.name for d in street.devices if d.name not in ("lamppost-003", "lamppost-004")]
    with capture_logs() as logs:
        async with running(driver, emit):
            await wait_until(lambda: all(emit.polls[n] >= 1 for n in others), "first polls")
            await street.switch_off("lamppost-003")  # refuses connections
            street.set_fault("lamppost-004", Fault.SILENT)  # takes requests, never answers
            await wait_until(
                lambda: (
                    emit.state("lamppost-003") is DeviceState.DOWN
                    and emit.state("lamppost-004") is DeviceState.DOWN
                ),
                "both dead devices DOWN",
            )
            before = dict(emit.polls)
            await wait_until(
                lambda: all(emit.polls[n] >= before[n] + 3 for n in others),
                "three more polls of every other device while two are down",
            )
            assert all(emit.state(n) is DeviceState.UP for n in others)
            failures = {h.device: sum(h.errors.values()) for h in driver.health()}
            await wait_until(
                lambda: all(
                    sum(h.errors.values()) >= failures[h.device] + 2
                    for h in driver.health() if h.device in ("lamppost-003", "lamppost-004")
                ),
                "dead devices retried (with backoff)",
            )  # fmt: skip

            await street.switch_on("lamppost-003")
            street.set_fault("lamppost-004", None)
            await wait_until(
                lambda: (
                    emit.state("lamppost-003") is DeviceState.UP
                    and emit.state("lamppost-004") is DeviceState.UP
                ),
                "both devices UP again",
            )

    health = {h.device: h for h in driver.health()}
    assert health["lamppost-003"].errors.keys() == {"connection"}
    assert health["lamppost-004"].errors.keys() == {"timeout"}
    assert all(not health[n].errors for n in others)
    for name in ("lamppost-003", "lamppost-004"):
        changes = [
            e.active for e in emit.events if e.kind == UNREACHABLE_EVENT and e.source == name
        ]
        assert changes == [True, False], name
        loud = [e for e in logs if e["event"] == "modbus.device_failing"
                and e["device"] == name and e["log_level"] == "warning"]  # fmt: skip
        assert len(loud) == 1, "first failure loud, the rest quiet until recovery"
        assert health[name].errors[next(iter(health[name].errors))] >= 3
        assert any(e["event"] == "modbus.device_recovered" and e["device"] == name for e in logs)


async def test_garbage_and_exception_replies_are_counted_not_fatal(street: ModbusStreet) -> None:
    driver = make_driver(street, retries=1)
    try:
        street.set_fault("lamppost-006", Fault.GARBAGE)
        street.set_fault("cabinet-meter", Fault.EXCEPTION)
        raised: list[Reading | Event] = []
        for _ in range(3):
            raised += await driver.poll("lamppost-006")  # no reading: only the event, once
            raised += await driver.poll("cabinet-meter")
            assert len(await driver.poll("lamppost-007")) == 19
        events = [e for e in raised if isinstance(e, Event)]
        assert [(e.kind, e.source, e.active, e.data["reason"]) for e in events] == [
            (BAD_ANSWER_EVENT, "lamppost-006", True, "decode"),
            (BAD_ANSWER_EVENT, "cabinet-meter", True, "exception-4"),
        ]
        assert isinstance(raised[0], Event) and "got 1 values" in raised[0].data["detail"]
        health = {h.device: h for h in driver.health()}
        assert health["lamppost-006"].state is DeviceState.DEGRADED
        assert health["lamppost-006"].errors == {"decode": 6}  # 3 polls x (1 try + 1 retry)
        assert health["cabinet-meter"].state is DeviceState.DEGRADED
        assert health["cabinet-meter"].errors == {"exception-4": 6}  # 2 requests, no retries
        assert health["lamppost-007"].state is DeviceState.UP
        assert "exception 4 (server device failure)" in (health["cabinet-meter"].detail or "")

        street.set_fault("lamppost-006", None)
        street.set_fault("cabinet-meter", None)
        assert len(await driver.poll("lamppost-006")) == 19
        assert len(await driver.poll("cabinet-meter")) == 14
        # cleared once, after CLEAR_AFTER polls answered in full
        cleared = [await driver.poll("cabinet-meter") for _ in range(CLEAR_AFTER - 1)]
        assert [[i for i in c if isinstance(i, Event)] for c in cleared][-1] == [
            Event(BAD_ANSWER_EVENT, "cabinet-meter", cleared[-1][-1].ts, Severity.WARNING,
                  active=False, data={"driver": "street", "reasons": ["exception-4"]})
        ]  # fmt: skip
        assert {h.device: h.state for h in driver.health()}["cabinet-meter"] is DeviceState.UP
        with pytest.raises(DeviceUnreachable, match="got 1 values"):
            street.set_fault("lamppost-006", Fault.GARBAGE)
            await driver.read("lamppost-006")
    finally:
        await driver.aclose()


async def test_wrong_unit_is_an_exception_reply(street: ModbusStreet) -> None:
    tables = street.driver_tables("street", **FAST)
    tables["devices"] = tables["devices"][:1]
    tables["devices"][0]["unit"] = 9  # the device answers unit 1 only
    driver = build(Section.parse(tables), DriverEnv(Path("/x"), Path("/x")))
    try:
        [event] = await driver.poll("lamppost-001")  # no reading: the bad answer, upstream
        assert isinstance(event, Event) and event.kind == BAD_ANSWER_EVENT and event.active
        assert event.data["reason"] == "exception-11"
        (health,) = driver.health()
        assert health.errors == {"exception-11": 1} and health.state is DeviceState.DEGRADED
    finally:
        await driver.aclose()


async def test_alarm_bits_raise_and_clear_events(street: ModbusStreet) -> None:
    driver = make_driver(street)
    try:

        def alarms(items: Sequence[Reading | Event]) -> list[tuple[str, bool | None]]:
            return [(i.kind, i.active) for i in items if isinstance(i, Event)]

        assert alarms(await driver.poll("lamppost-008")) == []  # quiet at first sight
        street.fail_lamp("lamppost-008")
        raised = [i for i in await driver.poll("lamppost-008") if isinstance(i, Event)]
        assert [(e.kind, e.active, e.severity, e.source) for e in raised] == [
            ("lamppost.lamp_failure", True, Severity.ALARM, "lamppost-008")
        ]
        assert alarms(await driver.poll("lamppost-008")) == []  # still failed: no repeat
        street.fail_lamp("lamppost-008", failed=False)
        assert alarms(await driver.poll("lamppost-008")) == [("lamppost.lamp_failure", False)]

        street.fail_lamp("lamppost-009")  # already failed when first seen: raised at once
        street.lamppost("lamppost-009").driver_fault = True
        assert sorted(alarms(await driver.poll("lamppost-009"))) == [
            ("lamppost.driver_fault", True),
            ("lamppost.lamp_failure", True),
        ]
    finally:
        await driver.aclose()


async def test_catalogue_exposes_points_and_deadbands(street: ModbusStreet) -> None:
    driver = make_driver(street)
    catalogue = driver.catalogue()
    assert len(catalogue) == 21
    lamp = catalogue["lamppost-001"]
    assert lamp.device_type == "lamppost" and lamp.driver == "street"
    assert lamp.points["dimming"].deadband == 1 and lamp.points["dimming"].access == "rw"
    assert lamp.points["dimming"].maximum == 100 and lamp.points["dimming"].kind == "int"
    assert lamp.points["power"].kind == "float" and lamp.points["lamp_failure"].kind == "bool"
    assert catalogue["cabinet-meter"].points["energy_import"].unit == "kWh"
    assert [h.state for h in driver.health()] == [DeviceState.UNKNOWN] * 21


def test_devices_behind_one_gateway_share_one_bus() -> None:
    section = Section.parse(
        {
            "name": "gateway",
            "devices": [
                {"name": f"meter-{u}", "profile": "energy-meter", "host": "127.0.0.1",
                 "port": 5020, "unit": u} for u in (1, 2, 3)
            ] + [{"name": "alone", "profile": "lamppost", "host": "127.0.0.1", "port": 5021}],
        }
    )  # fmt: skip
    driver = ModbusDriver(section)
    buses = {name: dev.bus for name, dev in driver._devices.items()}
    assert buses["meter-1"] is buses["meter-2"] is buses["meter-3"]
    assert buses["alone"] is not buses["meter-1"]


async def test_a_value_that_does_not_decode_costs_only_that_point() -> None:
    meter = SimulatedDevice("odd-meter", resolve_profile("energy-meter"))
    nan = encode(meter.profile.points["voltage_l2"], 1.0)  # right layout, then made NaN
    nan[nan.index(max(nan))] = 0x7FC0  # the high word of a quiet NaN
    meter.tables[RegisterKind.INPUT][2:4] = nan
    server = await DeviceServer.start(meter)
    tables = {"name": "cabinet", "devices": [{"name": "odd-meter", "profile": "energy-meter",
              "host": "127.0.0.1", "port": server.port, **FAST}]}  # fmt: skip
    driver = ModbusDriver(Section.parse(tables))
    try:
        items = await driver.poll("odd-meter")
        assert {i.point for i in items if isinstance(i, Reading)} == set(meter.profile.points) - {
            "voltage_l2"
        }
        (health,) = driver.health()
        assert health.state is DeviceState.DEGRADED and health.errors == {"decode": 1}
        assert "voltage_l2" in (health.detail or "")
        with pytest.raises(DeviceRejected, match="voltage_l2: device sent nan"):
            await driver.read("odd-meter", ["voltage_l2"])
    finally:
        await driver.aclose()
        await server.stop()
