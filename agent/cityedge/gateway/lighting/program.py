"""Lighting programs as data: steps through the night, groups, calendar exceptions.

A program is evaluated per *night*: the night of date D starts at its first
step (usually at sunset of D) and ends at `off` (usually sunrise of D+1). A
step's time is `sunset`, `sunrise`, either with an offset in minutes
(`sunset+15`, `sunrise-60`), or a clock time (`23:00`); clock times from noon on
belong to D, earlier ones to the morning of D+1.

    [lighting.programs.standard]
    steps = [{ at = "sunset", level = 100 }, { at = "23:00", level = 50 },
             { at = "sunrise-60", level = 70 }]
    [lighting.programs.corridor]            # wildlife corridor: low light, later on
    steps = [{ at = "sunset+20", level = 20 }]
    [[lighting.groups]]
    name = "via-roma"
    devices = ["lamppost-001", "lamppost-002"]
    program = "standard"
    baseline_watts = 150                    # the sodium lamp each LED replaced, all night
    [[lighting.exceptions]]
    date = "2026-12-31"                     # festival night
    program = "festival"
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from functools import lru_cache
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from astral import Observer
from astral.sun import sun

from cityedge.gateway.config import ConfigError
from cityedge.sdk.problems import error_lines
from cityedge.sdk.tables import Field, Invalid, Table, check, check_table

TIME_SPEC = re.compile(r"^(?:(sunset|sunrise)(?:([+-])(\d{1,3}))?|([01]\d|2[0-3]):([0-5]\d))$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Level = Annotated[int, Field(ge=0, le=100)]


class Step(Table):
    at: str
    level: Level

    @check("at")
    @classmethod
    def _spec(cls, value: str) -> str:
        if not TIME_SPEC.match(value):
            raise ValueError(
                f"expected sunset, sunrise, sunset+MIN, sunrise-MIN or HH:MM, got {value!r}"
            )
        return value


class Program(Table):
    steps: list[Step] = Field(min_length=1, max_length=24)
    off: str = "sunrise"

    @check("off")
    @classmethod
    def _off(cls, value: str) -> str:
        return Step._spec(value)


class Group(Table):
    name: str = Field(min_length=1, max_length=64)
    devices: list[str] = Field(min_length=1)
    program: str
    corridor: bool = False
    baseline_watts: float = Field(default=150.0, gt=0, le=5000)


class Exception_(Table):
    date: dt.date | None = None
    weekdays: list[str] = Field(default_factory=list)
    program: str
    groups: list[str] = Field(default_factory=list)  # empty: every group that is not a corridor

    @check("weekdays")
    @classmethod
    def _weekdays(cls, value: list[str]) -> list[str]:
        bad = [d for d in value if d not in WEEKDAYS]
        if bad:
            raise ValueError(f"unknown weekday(s) {bad}: use {', '.join(WEEKDAYS)}")
        return value

    @check_table
    def _when(self) -> None:
        if self.date is None and not self.weekdays:
            raise ValueError("an exception needs a date or weekdays")


class Lighting(Table):
    """The whole lighting document: from the config, or pushed by the command post."""

    version: int = Field(default=0, ge=0)
    dimming_point: str = "dimming"
    switch_point: str | None = "lamp_on"
    power_point: str = "power"
    energy_point: str = "energy"
    fault_point: str = "driver_fault"
    failure_watts: float = Field(default=5.0, ge=0)  # commanded on but drawing less: lamp failure
    grace_s: float = Field(default=120.0, ge=0)  # how long a mismatch may last before an alarm
    programs: dict[str, Program]
    groups: list[Group] = Field(min_length=1)
    exceptions: list[Exception_] = Field(default_factory=list)

    @check_table
    def _references(self) -> None:
        problems = []
        names = set(self.programs)
        for i, group in enumerate(self.groups):
            if group.program not in names:
                problems.append(f"groups[{i}].program: no program {group.program!r}")
        group_names = [g.name for g in self.groups]
        if len(set(group_names)) != len(group_names):
            problems.append("groups: group names must be unique")
        seen: dict[str, str] = {}
        for group in self.groups:
            for device in group.devices:
                if device in seen:
                    problems.append(f"groups: {device!r} is in {seen[device]!r} and {group.name!r}")
                seen[device] = group.name
        for i, exc in enumerate(self.exceptions):
            if exc.program not in names:
                problems.append(f"exceptions[{i}].program: no program {exc.program!r}")
            unknown = set(exc.groups) - set(group_names)
            if unknown:
                problems.append(f"exceptions[{i}].groups: unknown {sorted(unknown)}")
        if problems:
            raise ValueError("; ".join(problems))


def load_lighting(raw: Any, source: str = "<config>") -> Lighting:
    try:
        return Lighting.parse(raw)
    except Invalid as err:
        raise ConfigError(source, error_lines(err, ("lighting",))) from None


# --- evaluation ---------------------------------------------------------------------


class Sky:
    """Sun times at one place, cached per date."""

    def __init__(self, latitude: float, longitude: float, timezone: str) -> None:
        try:
            self.tz = ZoneInfo(timezone)
        except ZoneInfoNotFoundError:
            raise ValueError(f"unknown time zone {timezone!r}") from None
        self.observer = Observer(latitude, longitude)

    @lru_cache(maxsize=64)  # noqa: B019  (a few nights per gateway, for its lifetime)
    def sun(self, date: dt.date) -> tuple[dt.datetime, dt.datetime]:
        times = sun(self.observer, date=date, tzinfo=self.tz)
        return times["sunrise"], times["sunset"]


def resolve(spec: str, night: dt.date, sky: Sky) -> dt.datetime:
    """The moment `spec` means in the night that starts on `night`."""
    match = TIME_SPEC.match(spec)
    assert match is not None  # validated
    event, sign, minutes, hour, minute = match.groups()
    if event:
        base = sky.sun(night)[1] if event == "sunset" else sky.sun(night + dt.timedelta(days=1))[0]
        offset = int(minutes or 0) * (-1 if sign == "-" else 1)
        return base + dt.timedelta(minutes=offset)
    day = night if int(hour) >= 12 else night + dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(int(hour), int(minute)), sky.tz)


def transitions(program: Program, night: dt.date, sky: Sky) -> list[tuple[dt.datetime, int]]:
    """(moment, level) for the night, ending with (off, 0). Raises ValueError when the
    steps are not in order that night (overlapping steps)."""
    points = [(resolve(s.at, night, sky), s.level) for s in program.steps]
    points.append((resolve(program.off, night, sky), 0))
    for (a, _), (b, _) in itertools.pairwise(points):
        if not a < b:
            raise ValueError(
                f"steps overlap on the night of {night}: {a:%H:%M} is not before {b:%H:%M}"
            )
    return points


def check_order(program: Program, sky: Sky, year: int) -> None:
    """Validate step order on the shortest and longest nights (and the equinoxes)."""
    for month, day in ((3, 20), (6, 21), (9, 22), (12, 21)):
        transitions(program, dt.date(year, month, day), sky)


def program_for(lighting: Lighting, group: Group, night: dt.date) -> str:
    weekday = WEEKDAYS[night.weekday()]
    for exc in lighting.exceptions:
        applies = group.name in exc.groups if exc.groups else not group.corridor
        if applies and (exc.date == night or (exc.date is None and weekday in exc.weekdays)):
            return exc.program
    return group.program


def level_at(
    lighting: Lighting, group: Group, when: dt.datetime, sky: Sky
) -> tuple[int, dt.datetime, str]:
    """(level %, next transition, program name) for `group` at `when`."""
    local = when.astimezone(sky.tz)
    for night in (local.date() - dt.timedelta(days=1), local.date()):
        name = program_for(lighting, group, night)
        points = transitions(lighting.programs[name], night, sky)
        start, end = points[0][0], points[-1][0]
        if start <= local < end:
            level = 0
            upcoming = end
            for moment, step_level in points:
                if moment <= local:
                    level = step_level
                else:
                    upcoming = moment
                    break
            return level, upcoming, name
        if local < start:
            return 0, start, name
    # after this morning's off time and before tonight's start: day
    tonight = local.date()
    name = program_for(lighting, group, tonight)
    return 0, transitions(lighting.programs[name], tonight, sky)[0][0], name
