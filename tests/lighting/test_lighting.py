"""Lighting at the edge: schedules against the sun (checked with an independent
solar formula), calendars, the energy proof, faults, pushed programs, and an
accelerated night on simulated lamppost controllers through the real Modbus
driver — with no uplink at all."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from pathlib import Path
from typing import Any

import pytest

from cityedge.gateway.config import ConfigError
from cityedge.gateway.lighting import LightingController, ScaledClock, Sky, level_at, load_lighting
from cityedge.gateway.lighting.energy import consumed_kwh
from cityedge.gateway.registry import build_driver
from cityedge.sdk.driver import DriverEnv
from cityedge.sdk.model import Command, Event, Reading, ResultCode
from cityedge.street.modbus import ModbusStreet

MILAN = (45.4642, 9.19)
ROME_TZ = "Europe/Rome"
SKY = Sky(*MILAN, ROME_TZ)
LIGHTING: dict[str, Any] = {
    "version": 1,
    "programs": {
        "standard": {"steps": [{"at": "sunset", "level": 100}, {"at": "23:00", "level": 50},
                               {"at": "sunrise-60", "level": 70}]},
        "corridor": {"steps": [{"at": "sunset+20", "level": 20}]},
        "festival": {"steps": [{"at": "sunset", "level": 100}]},
    },
    "groups": [
        {"name": "street", "devices": ["lamppost-001", "lamppost-002"], "program": "standard"},
        {"name": "park", "devices": ["lamppost-003"], "program": "corridor", "corridor": True},
    ],
    "exceptions": [{"date": "2026-12-31", "program": "festival"}],
}  # fmt: skip


def noaa_sun(date: dt.date, lat: float, lon: float) -> tuple[dt.datetime, dt.datetime]:
    """Sunrise and sunset (UTC) by NOAA's general solar position equations —
    independent of astral, good to a couple of minutes."""
    day = date.timetuple().tm_yday
    g = 2 * math.pi / 365 * (day - 1)
    eqtime = 229.18 * (
        0.000075
        + 0.001868 * math.cos(g)
        - 0.032077 * math.sin(g)
        - 0.014615 * math.cos(2 * g)
        - 0.040849 * math.sin(2 * g)
    )
    decl = (0.006918 - 0.399912 * math.cos(g) + 0.070257 * math.sin(g)
            - 0.006758 * math.cos(2 * g) + 0.000907 * math.sin(2 * g)
            - 0.002697 * math.cos(3 * g) + 0.00148 * math.sin(3 * g))  # fmt: skip
    phi = math.radians(lat)
    ha = math.degrees(math.acos(math.cos(math.radians(90.833)) / (math.cos(phi) * math.cos(decl))
                                - math.tan(phi) * math.tan(decl)))  # fmt: skip
    midnight = dt.datetime.combine(date, dt.time(0), dt.UTC)
    rise = midnight + dt.timedelta(minutes=720 - 4 * (lon + ha) - eqtime)
    sett = midnight + dt.timedelta(minutes=720 - 4 * (lon - ha) - eqtime)
    return rise, sett


def local(y: int, m: int, d: int, hh: int, mm: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=SKY.tz)


LIT = load_lighting(LIGHTING)
STREET, PARK = LIT.groups


@pytest.mark.parametrize(
    "date", [dt.date(2026, 6, 21), dt.date(2026, 12, 21), dt.date(2026, 3, 20)]
)
def test_lights_follow_the_sun_checked_independently(date: dt.date) -> None:
    rise_next, _ = noaa_sun(date + dt.timedelta(days=1), *MILAN)
    _, sunset = noaa_sun(date, *MILAN)
    minute = dt.timedelta(minutes=3)
    assert level_at(LIT, STREET, sunset - minute, SKY)[0] == 0
    assert level_at(LIT, STREET, sunset + minute, SKY)[0] == 100
    _, nxt, _ = level_at(LIT, STREET, sunset - minute, SKY)
    assert abs(nxt - sunset) < minute  # the next transition is sunset
    assert level_at(LIT, STREET, rise_next - dt.timedelta(minutes=63), SKY)[0] == 50
    assert level_at(LIT, STREET, rise_next - dt.timedelta(minutes=57), SKY)[0] == 70
    assert level_at(LIT, STREET, rise_next + minute, SKY)[0] == 0
    # the corridor group: low light, from 20 minutes after sunset
    assert level_at(LIT, PARK, sunset + dt.timedelta(minutes=17), SKY)[0] == 0
    assert level_at(LIT, PARK, sunset + dt.timedelta(minutes=23), SKY)[0] == 20
    assert level_at(LIT, PARK, rise_next - minute, SKY)[0] == 20


def test_clock_time_steps_and_calendar_exceptions() -> None:
    assert level_at(LIT, STREET, local(2026, 6, 21, 23, 30), SKY)[0] == 50
    assert level_at(LIT, STREET, local(2026, 6, 22, 2, 0), SKY)[0] == 50  # same night
    festival = local(2026, 12, 31, 23, 30)
    assert level_at(LIT, STREET, festival, SKY)[0:3:2] == (100, "festival")
    assert level_at(LIT, PARK, festival, SKY)[0] == 20  # corridors keep their own program


def test_invalid_documents_name_what_is_wrong() -> None:
    bad = {**LIGHTING, "groups": [{"name": "g", "devices": ["x"], "program": "nope"}]}
    with pytest.raises(ConfigError) as info:
        load_lighting(bad)
    assert "no program 'nope'" in str(info.value)
    bad_level = {**LIGHTING, "programs": {"standard": {"steps": [{"at": "sunset", "level": 150}]}}}
    with pytest.raises(ConfigError) as info:
        load_lighting(bad_level)
    assert "lighting.programs.standard.steps[0].level" in str(info.value)
    with pytest.raises(ConfigError, match="expected sunset"):
        load_lighting({**LIGHTING, "programs": {**LIGHTING["programs"],
                      "x": {"steps": [{"at": "dusk", "level": 1}]}}})  # fmt: skip


def test_energy_with_counter_reset_and_wrap() -> None:
    assert consumed_kwh([100.0, 100.4, 100.9]) == pytest.approx(0.9)
    # controller replaced mid-night: counter restarts at 0
    assert consumed_kwh([100.0, 100.5, 0.1, 0.3]) == pytest.approx(0.8)
    top = (2**32) * 0.01
    assert consumed_kwh([top - 0.2, 0.3]) == pytest.approx(0.5)


class Recorder:
    def __init__(self) -> None:
        self.writes: list[tuple[str, str, object]] = []
        self.events: list[Event] = []

    async def write(self, device: str, point: str, value: object) -> None:
        self.writes.append((device, point, value))

    async def emit(self, items: Any) -> None:
        self.events.extend(items)


def controller(tmp_path: Path, clock: ScaledClock, rec: Recorder) -> LightingController:
    return LightingController(LIT, SKY, write=rec.write, emit=rec.emit, state_dir=tmp_path,
                              clock=clock)  # fmt: skip


async def run_for(ctl: LightingController, seconds: float) -> None:
    task = asyncio.create_task(ctl.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_faults_are_raised_and_cleared(tmp_path: Path) -> None:
    rec = Recorder()
    clock = ScaledClock(local(2026, 6, 21, 23, 30), speed=600)  # night, level 50
    ctl = controller(tmp_path, clock, rec)
    await run_for(ctl, 0.05)
    assert ctl.commanded["lamppost-001"] == 50
    now = time.time()
    ctl.observe([Reading("lamppost-001", "power", 0.5, now),  # on but dark: lamp failure
                 Reading("lamppost-002", "driver_fault", True, now),
                 Reading("lamppost-003", "dimming", 90, now)])  # fmt: skip
    await run_for(ctl, 0.5)  # 5 minutes of clock time: past the 2-minute grace
    raised = {(e.kind, e.source) for e in rec.events if e.active}
    assert ("lighting.lamp_failure", "lamppost-001") in raised
    assert ("lighting.driver_fault", "lamppost-002") in raised
    # lamppost-003 reported 90 instead of 20: the level is re-sent
    assert rec.writes.count(("lamppost-003", "dimming", 20)) >= 2
    ctl.observe([Reading("lamppost-001", "power", 60.0, now),
                 Reading("lamppost-002", "driver_fault", False, now)])  # fmt: skip
    await run_for(ctl, 0.05)
    cleared = {(e.kind, e.source) for e in rec.events if e.active is False}
    assert {
        ("lighting.lamp_failure", "lamppost-001"),
        ("lighting.driver_fault", "lamppost-002"),
    } <= cleared


async def test_day_burner(tmp_path: Path) -> None:
    rec = Recorder()
    ctl = controller(tmp_path, ScaledClock(local(2026, 6, 21, 12, 0), speed=600), rec)
    await run_for(ctl, 0.05)
    ctl.observe([Reading("lamppost-002", "power", 80.0, time.time())])
    await run_for(ctl, 0.5)
    assert any(e.kind == "lighting.day_burner" and e.active for e in rec.events)


def push(doc: dict[str, Any], cid: str = "c1") -> Command:
    now = time.time()
    return Command(cid, "gw", None, "lighting.program", {"lighting": doc}, now, now + 60, "k")


async def test_pushed_programs_valid_invalid_and_stale(tmp_path: Path) -> None:
    rec = Recorder()
    ctl = controller(tmp_path, ScaledClock(local(2026, 6, 21, 23, 30), speed=1), rec)
    brighter = {"steps": [{"at": "sunset", "level": 80}]}
    newer = {**LIGHTING, "version": 2, "programs": {**LIGHTING["programs"], "standard": brighter}}
    overlapping = {**LIGHTING, "version": 3, "programs": {**LIGHTING["programs"], "standard": {
        "steps": [{"at": "23:00", "level": 50}, {"at": "22:00", "level": 60}]}}}  # fmt: skip
    out_of_range = {**LIGHTING, "version": 3, "programs": {**LIGHTING["programs"], "standard": {
        "steps": [{"at": "sunset", "level": 101}]}}}  # fmt: skip
    assert (await ctl.push(push(newer))).code == ResultCode.DONE
    for bad in (overlapping, out_of_range):
        result = await ctl.push(push(bad))
        assert result.code == ResultCode.REJECTED and result.detail
    stale = await ctl.push(push({**LIGHTING, "version": 2}))
    assert stale.code == ResultCode.REJECTED and "stale" in stale.detail
    assert ctl.lighting.version == 2  # the good one keeps running
    assert level_at(ctl.lighting, ctl.lighting.groups[0], local(2026, 6, 21, 23, 30), SKY)[0] == 80
    # a pushed range of nights: refused when it ends before it begins, run when right
    ranged = {**newer, "version": 3, "exceptions": [
        {"from": "2026-06-20", "until": "2026-06-22", "program": "festival"}]}  # fmt: skip
    backwards = {**ranged, "exceptions": [
        {"from": "2026-06-22", "until": "2026-06-20", "program": "festival"}]}  # fmt: skip
    result = await ctl.push(push(backwards, "c2"))
    assert result.code == ResultCode.REJECTED
    assert "until 2026-06-20 is before from 2026-06-22" in result.detail
    assert (await ctl.push(push(ranged, "c3"))).code == ResultCode.DONE
    street = ctl.lighting.groups[0]
    assert level_at(ctl.lighting, street, local(2026, 6, 21, 23, 30), SKY)[0::2] == (
        100,
        "festival",
    )
    # a restarted gateway resumes the pushed program, its range with it, at once
    again = controller(tmp_path, ScaledClock(local(2026, 6, 21, 23, 30), speed=1), Recorder())
    assert again.lighting.version == 3
    assert again.lighting.exceptions == ctl.lighting.exceptions


async def test_accelerated_night_on_simulated_controllers(tmp_path: Path) -> None:
    """18:00 to 06:30 on 21 June at Milan, 1,800x: the simulated lamppost controllers
    receive the right level at the right (simulated) time, uplink or no uplink."""
    async with ModbusStreet(lampposts=3, meters=0) as street:
        from cityedge.drivers.modbus.config import Section

        section = Section.parse(street.driver_tables(name="street", timeout=1.0))
        driver = build_driver("modbus", section, DriverEnv(tmp_path, tmp_path))
        start = local(2026, 6, 21, 20, 45)
        clock = ScaledClock(start, speed=1800)
        rec = Recorder()
        ctl = LightingController(LIT, SKY, write=driver.write, emit=rec.emit,
                                 state_dir=tmp_path, clock=clock)  # fmt: skip
        seen: dict[str, list[tuple[dt.datetime, int]]] = {d.name: [] for d in street.devices}
        task = asyncio.create_task(ctl.run())
        try:
            for _ in range(500):  # 0.05 s real = 90 s of night per sample
                now = clock.now()
                for name, history in seen.items():
                    level = int(street.register(name, "dimming"))
                    if not history or history[-1][1] != level:
                        history.append((now, level))
                if now > local(2026, 6, 22, 6, 0):
                    break
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    _, sunset = noaa_sun(dt.date(2026, 6, 21), *MILAN)
    sunrise, _ = noaa_sun(dt.date(2026, 6, 22), *MILAN)
    tolerance = dt.timedelta(minutes=5)

    def at(name: str, level: int) -> dt.datetime:
        return next(t for t, v in seen[name] if v == level)

    street_levels = [v for _, v in seen["lamppost-001"]]
    # before sunset the controller switches the lamp off (whatever it was), then the night
    assert street_levels[-5:] == [0, 100, 50, 70, 0], street_levels
    assert abs(at("lamppost-001", 100) - sunset) < tolerance
    assert abs(at("lamppost-001", 50) - local(2026, 6, 21, 23, 0)) < tolerance
    assert abs(at("lamppost-001", 70) - (sunrise - dt.timedelta(minutes=60))) < tolerance
    assert abs(seen["lamppost-001"][-1][0] - sunrise) < tolerance
    corridor = [v for _, v in seen["lamppost-003"]]
    assert 20 in corridor and 100 not in corridor
    assert abs(at("lamppost-003", 20) - (sunset + dt.timedelta(minutes=20))) < tolerance
    reports = [e for e in rec.events if e.kind == "lighting.energy_report"]
    assert {e.source for e in reports} == {"street", "park"}
