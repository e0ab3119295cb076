"""The driver on a serial line: a junction cabinet (two traffic controllers and
a meter, pymodbus's RTU server) read through real ptys, one transaction at a
time, in turns; writes, alarms, dead units, a greedy device, a missing port.

The helpers here (`Recorder`, `running`, `wait_until`) serve
hil_tests/test_modbus_rtu.py too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from cityedge.drivers.modbus import Section, build
from cityedge.drivers.modbus.answers import BAD_ANSWER_EVENT
from cityedge.drivers.modbus.buses import BUS_SUFFIX
from cityedge.drivers.modbus.driver import ModbusDriver
from cityedge.sdk.driver import Driver, DriverEnv
from cityedge.sdk.health import UNREACHABLE_EVENT
from cityedge.sdk.model import (
    DeviceRejected,
    DeviceState,
    Event,
    InvalidValue,
    Reading,
    Severity,
)
from cityedge.street.modbus import Fault, JunctionCabinet, TrafficMode
from cityedge.street.rs485 import Cable

pytestmark = pytest.mark.timeout(90)

LINE = {"timeout": 0.5, "reopen_max": 0.4}  # generous: the cabinet shares a loaded machine
FAST = {"poll_interval": 0.2, "retries": 0, "backoff_max": 0.8}
ENV = DriverEnv(state_dir=Path("/nonexistent"), config_dir=Path("/nonexistent"))


@dataclass(frozen=True)
class Poll:
    device: str
    at: float  # loop time it started
    readings: int  # how many it returned


class Recorder:
    """The emit callback, and a spy on the driver's polls (who, when, how many readings)."""

    def __init__(self, driver: ModbusDriver) -> None:
        self.driver = driver
        self.readings: list[Reading] = []
        self.events: list[Event] = []
        self.polls: list[Poll] = []
        poll = driver.poll

        async def counted(name: str) -> list[Reading | Event]:
            at = asyncio.get_running_loop().time()
            items = await poll(name)
            self.polls.append(Poll(name, at, sum(isinstance(i, Reading) for i in items)))
            return items

        driver.poll = counted  # type: ignore[method-assign,assignment]

    async def __call__(self, items: Sequence[Reading | Event]) -> None:
        for item in items:
            if isinstance(item, Reading):
                self.readings.append(item)
            else:
                self.events.append(item)

    def polled(self) -> Counter[str]:
        return Counter(p.device for p in self.polls)

    def health(self, device: str) -> Any:
        return next(h for h in self.driver.health() if h.device == device)

    def state(self, device: str) -> DeviceState:
        return self.health(device).state  # type: ignore[no-any-return]

    def changes(self, device: str) -> list[bool | None]:
        return [e.active for e in self.events if e.kind == UNREACHABLE_EVENT and e.source == device]


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            # polling the driver's state: it has no hook to wait on, and this is bounded
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for: {what}") from None


@contextlib.asynccontextmanager
async def running(driver: ModbusDriver, emit: Recorder) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(driver.run(emit))
    try:
        yield task
        assert not task.done(), "the driver stopped"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(10):
                await task


def make_driver(table: dict[str, Any]) -> ModbusDriver:
    driver = build(Section.parse(table), ENV)
    assert isinstance(driver, Driver)
    return driver


@dataclass
class Junction:
    cable: Cable
    cabinet: JunctionCabinet

    def table(self, line: dict[str, Any] | None = None, **devices: Any) -> dict[str, Any]:
        line = {**LINE, **(line or {})}
        return self.cabinet.driver_table(
            "junction", self.cable.gateway_end, line=line, **{**FAST, **devices}
        )


@pytest.fixture
async def junction(tmp_path: Path) -> AsyncIterator[Junction]:
    async with Cable(tmp_path) as cable, JunctionCabinet(cable.device_end, seed=3) as cabinet:
        yield Junction(cable, cabinet)


NAMES = ("traffic-controller-1", "traffic-controller-2", "junction-meter")


async def test_the_junction_is_read_in_the_planned_requests_without_errors(
    junction: Junction,
) -> None:
    driver = make_driver(junction.table())
    record = Recorder(driver)
    async with running(driver, record):
        await wait_until(lambda: all(record.polled()[n] >= 3 for n in NAMES), "3 polls each")
    cabinet = junction.cabinet
    for name in NAMES:
        profile = cabinet.device(name).profile
        assert {r.point for r in record.readings if r.device == name} == set(profile.points)
        # counted at the device: each poll cost exactly the planned requests
        assert cabinet.read_requests(name) == len(profile.requests) * record.polled()[name]
        assert record.state(name) is DeviceState.UP and not record.health(name).errors
    modes = {r.value for r in record.readings if r.point == "mode"}
    assert modes == {TrafficMode.NORMAL}
    line = record.health(f"junction{BUS_SUFFIX}")
    assert line.state is DeviceState.UP and not line.errors
    assert line.requests == sum(cabinet.read_requests(n) for n in NAMES)
    assert line.detail.startswith("19200 8N2: busy ")
    assert "tx/s of at most 41.6" in line.detail
    report = driver.line_report()
    assert report is not None and report.transactions == line.requests
    # (a pty moves bytes faster than 19200 baud: of_max can pass 1 here, not on a real line)
    assert report.of_max > 0 and report.demand_per_s == pytest.approx(30.0)
    assert driver.catalogue()["traffic-controller-1"].points["plan"].choices == (1, 2, 3, 4)


async def test_writes_reach_the_controller_and_refusals_are_named(junction: Junction) -> None:
    driver = make_driver(junction.table())
    cabinet = junction.cabinet
    try:
        await driver.write("traffic-controller-2", "plan", 3)
        await driver.write("traffic-controller-2", "mode", TrafficMode.FLASHING_AMBER)
        assert cabinet.register("traffic-controller-2", "plan") == 3
        read = await driver.read("traffic-controller-2", ["mode", "plan"])
        assert {r.point: r.value for r in read} == {"mode": 1, "plan": 3}
        with pytest.raises(InvalidValue, match="plan: 7 is not one of 1, 2, 3, 4"):
            await driver.write("traffic-controller-2", "plan", 7)
        assert cabinet.write_requests("traffic-controller-2") == 2  # 7 never left the gateway
        with pytest.raises(DeviceRejected, match="exception 3"):
            await driver.write("traffic-controller-2", "mode", TrafficMode.MANUAL)
        assert cabinet.register("traffic-controller-2", "mode") == TrafficMode.FLASHING_AMBER
        errors = {h.device: h.errors for h in driver.health()}
        assert errors["traffic-controller-2"] == {"exception-3": 1}
    finally:
        await driver.aclose()


async def test_traffic_faults_become_alarms_and_clear(junction: Junction) -> None:
    driver = make_driver(junction.table())
    signals = junction.cabinet.controller("traffic-controller-1")
    try:

        async def alarms() -> list[tuple[str, bool | None, Severity]]:
            items = await driver.poll("traffic-controller-1")
            return [(e.kind, e.active, e.severity) for e in items if isinstance(e, Event)]

        assert await alarms() == []  # quiet at first sight
        signals.inject("lamp_failure")
        signals.inject("conflict")
        assert sorted(await alarms()) == [
            ("traffic.conflict", True, Severity.ALARM),
            ("traffic.lamp_failure", True, Severity.ALARM),
        ]
        (mode,) = await driver.read("traffic-controller-1", ["mode"])
        assert mode.value == TrafficMode.FLASHING_AMBER  # the conflict monitor's doing
        assert await alarms() == []  # still active: not raised again
        signals.inject("conflict", active=False)
        assert await alarms() == [("traffic.conflict", False, Severity.ALARM)]
        signals.inject("door_open")
        signals.inject("power_failure")
        assert sorted(await alarms()) == [
            ("traffic.door_open", True, Severity.ALARM),
            ("traffic.power_failure", True, Severity.ALARM),
        ]
    finally:
        await driver.aclose()


async def test_bad_replies_are_counted_per_device_and_spare_the_others(
    junction: Junction,
) -> None:
    driver = make_driver(junction.table())
    record = Recorder(driver)
    cabinet = junction.cabinet
    async with running(driver, record):
        await wait_until(lambda: all(record.polled()[n] >= 1 for n in NAMES), "first polls")
        cabinet.set_fault("traffic-controller-2", Fault.BAD_CRC)
        cabinet.set_fault("junction-meter", Fault.TRUNCATED)
        before = record.polled()
        await wait_until(
            lambda: all(record.polled()[n] >= before[n] + 3 for n in NAMES),
            "3 more polls each, faults and all",
        )
        assert record.state("traffic-controller-2") is DeviceState.DEGRADED  # it answers, badly
        assert record.state("junction-meter") is DeviceState.DEGRADED
        assert record.state("traffic-controller-1") is DeviceState.UP
        cabinet.set_fault("traffic-controller-2", None)
        cabinet.set_fault("junction-meter", None)
        await wait_until(lambda: all(record.state(n) is DeviceState.UP for n in NAMES), "all UP")

        def bad_answers(name: str) -> list[tuple[bool | None, object]]:
            mine = [e for e in record.events if e.kind == BAD_ANSWER_EVENT and e.source == name]
            return [(e.active, e.data.get("reason", e.data.get("reasons"))) for e in mine]

        await wait_until(
            lambda: all(bad_answers(n)[-1:] == [(False, [r])] for n, r in
                        (("traffic-controller-2", "crc"), ("junction-meter", "truncated"))),
            "the bad answers cleared",
        )  # fmt: skip
    # upstream: once raised (however many bad polls), once cleared
    assert bad_answers("traffic-controller-2") == [(True, "crc"), (False, ["crc"])]
    assert bad_answers("junction-meter") == [(True, "truncated"), (False, ["truncated"])]
    assert bad_answers("traffic-controller-1") == []
    errors = {n: record.health(n).errors for n in NAMES}
    assert set(errors["traffic-controller-2"]) == {"crc"} and errors["traffic-controller-2"]["crc"]
    assert set(errors["junction-meter"]) == {"truncated"}
    assert errors["traffic-controller-1"] == {}


async def test_a_dead_unit_is_backed_off_and_the_others_keep_their_turns(
    junction: Junction,
) -> None:
    table = junction.table()
    table["devices"].append(
        {"name": "ghost", "profile": "traffic-controller", "unit": 9, **FAST, "backoff_max": 1.6}
    )
    driver = make_driver(table)
    record = Recorder(driver)
    async with running(driver, record):
        await wait_until(lambda: all(record.polled()[n] >= 15 for n in NAMES), "15 polls each")
        assert record.state("ghost") is DeviceState.DOWN
    polled = record.polled()
    # backed off 0.2, 0.4, 0.8, 1.6 s...: far fewer turns than the live ones' 0.2 s
    assert polled["ghost"] * 3 <= min(polled[n] for n in NAMES), polled
    assert set(record.health("ghost").errors) == {"timeout"}
    assert "no answer to read input 0+10 unit 9" in record.health("ghost").detail
    assert record.changes("ghost") == [True]
    assert all(record.state(n) is DeviceState.UP for n in NAMES)


async def test_a_greedy_device_does_not_starve_the_others(junction: Junction) -> None:
    table = junction.table()
    table["devices"][0]["poll_interval"] = 0.001  # asks far more than the line carries
    driver = make_driver(table)
    record = Recorder(driver)
    others = NAMES[1:]
    async with running(driver, record):
        await wait_until(lambda: all(record.polled()[n] >= 8 for n in others), "8 polls each")
    polled = record.polled()
    assert polled["traffic-controller-1"] > 3 * max(polled[n] for n in others)  # it got the rest
    # the others took their turns in step: the greedy one only between them
    assert abs(polled["traffic-controller-2"] - polled["junction-meter"]) <= 1
    assert all(record.state(n) is DeviceState.UP for n in NAMES)


async def test_a_port_that_is_not_there_yet(tmp_path: Path) -> None:
    port = tmp_path / "ttyGW"
    cabinet = JunctionCabinet(tmp_path / "ttyDEV")  # started once the cable exists
    driver = make_driver(cabinet.driver_table("junction", port, line=LINE, **FAST))
    record = Recorder(driver)
    async with running(driver, record):
        await wait_until(
            lambda: all(record.state(n) is DeviceState.DOWN for n in NAMES), "every device DOWN"
        )
        for name in NAMES:
            detail = record.health(name).detail
            assert detail == f"port {port}: no such device node (adapter unplugged?)"
            assert record.changes(name) == [True]
        line = record.health(f"junction{BUS_SUFFIX}")
        assert line.state is DeviceState.DOWN and line.errors["absent"] >= 1
        assert line.detail.startswith(f"port {port}: no such device node")
        async with Cable(tmp_path) as cable, cabinet:
            assert cable.gateway_end == port
            await wait_until(
                lambda: all(record.state(n) is DeviceState.UP for n in NAMES),
                "every device UP once the port is there",
            )
            assert record.state(f"junction{BUS_SUFFIX}") is DeviceState.UP
    for name in NAMES:
        assert record.changes(name) == [True, False]
    assert {p.device for p in record.polls} == set(NAMES)


async def test_a_node_that_vanishes_under_an_open_line(junction: Junction) -> None:
    # the line itself still works: only the node is gone, which is what a
    # driver can notice before the next transaction
    driver = make_driver(junction.table())
    record = Recorder(driver)
    node = junction.cable.gateway_end.readlink()
    async with running(driver, record):
        await wait_until(lambda: all(record.polled()[n] >= 1 for n in NAMES), "first polls")
        junction.cable.gateway_end.unlink()
        await wait_until(
            lambda: all(record.state(n) is DeviceState.DOWN for n in NAMES), "every device DOWN"
        )
        for name in NAMES:  # "device node gone", then "no such device node" on reopening
            detail = record.health(name).detail
            assert detail.startswith(f"port {junction.cable.gateway_end}: "), detail
            assert detail.endswith("(adapter unplugged?)"), detail
        junction.cable.gateway_end.symlink_to(node)
        await wait_until(lambda: all(record.state(n) is DeviceState.UP for n in NAMES), "back UP")
    line = record.health(f"junction{BUS_SUFFIX}")
    assert set(line.errors) <= {"absent", "stray_bytes"} and line.errors["absent"] >= 1


replies = st.one_of(
    st.binary(max_size=60).map(lambda raw: lambda reply: raw),  # random bytes
    st.integers(min_value=0, max_value=30).map(lambda n: lambda reply: reply[:n]),  # truncated
    st.integers(min_value=0, max_value=7).map(  # a wrong CRC
        lambda bit: lambda reply: reply[:-1] + bytes([reply[-1] ^ (1 << bit)])
    ),
    st.tuples(st.binary(max_size=8), st.binary(max_size=8)).map(  # noise around a good reply
        lambda t: lambda reply: t[0] + reply + t[1]
    ),
)


def test_whatever_a_device_sends_is_counted_never_a_crash(tmp_path: Path) -> None:
    async def start() -> tuple[Cable, JunctionCabinet, ModbusDriver]:
        cable = await Cable(tmp_path).__aenter__()
        cabinet = JunctionCabinet(cable.device_end, controllers=1, meters=0)
        await cabinet.start()
        table = cabinet.driver_table(
            "junction", cable.gateway_end, line={"timeout": 0.05, "frame_gap": 0.001}, retries=0
        )
        return cable, cabinet, make_driver(table)

    outcomes: Counter[str] = Counter()
    with asyncio.Runner() as runner:
        cable, cabinet, driver = runner.run(start())
        signals = cabinet.controller("traffic-controller-1")

        @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(replies)
        def poll(mangle: Callable[[bytes], bytes]) -> None:
            signals.mangle = mangle
            (before,) = [h for h in driver.health() if h.device == "traffic-controller-1"]
            with capture_logs():
                items = runner.run(driver.poll("traffic-controller-1"))  # never raises
            (after,) = [h for h in driver.health() if h.device == "traffic-controller-1"]
            failed = sum(after.errors.values()) - sum(before.errors.values())
            read = [i for i in items if isinstance(i, Reading)]
            # two requests, or one when the first found nobody (the rest would wait too)
            assert after.requests - before.requests in (1, 2)
            assert failed + (len(read) > 0) >= 1  # every request either read or counted
            if failed:
                assert after.state in (DeviceState.DEGRADED, DeviceState.DOWN)
                assert after.detail
            outcomes.update(after.errors.keys())
            outcomes["read"] += bool(read)

        try:
            poll()
            signals.mangle = None
            assert len(runner.run(driver.poll("traffic-controller-1"))) >= 14
        finally:
            runner.run(driver.aclose())
            runner.run(cabinet.close())
            runner.run(cable.close())
    assert {"crc", "truncated", "read"} <= set(outcomes), outcomes
