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
    [[lighting.exceptions]]                 # festive season: a range of nights, inclusive
    from = "12-08"                          # month-days: every year, across New Year
    until = "01-06"
    program = "festive"
    [[lighting.exceptions]]                 # market night: the first Saturday of a month
    weekdays = ["sat"]
    occurrences = [1]
    program = "market"

The tables only: the config validates `[lighting]` with them on every gateway, so
this module must not load astral; evaluation against the sun is in `schedule`.
"""

from __future__ import annotations

import datetime as dt
import re
from calendar import monthrange
from typing import Annotated, Any

from cityedge.sdk.problems import FileProblems
from cityedge.sdk.tables import Convert, Field, Invalid, Table, check, check_table

TIME_SPEC = re.compile(r"^(?:(sunset|sunrise)(?:([+-])(\d{1,3}))?|([01]\d|2[0-3]):([0-5]\d))$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MONTH_DAY = re.compile(r"^\d\d-\d\d$")  # a range's end every year: "12-08"
OCCURRENCES = (1, 2, 3, 4, 5, -1)  # which of its weekday in the month; -1 the last
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


def _bound(value: Any, context: Any) -> Any:
    """A range's end as written: a date (`2026-12-08`), or a month-day that recurs every
    year (`"12-08"`), kept as that text."""
    if isinstance(value, str) and MONTH_DAY.match(value):
        month, day = int(value[:2]), int(value[3:])
        if not 1 <= month <= 12 or not 1 <= day <= monthrange(2000, month)[1]:  # a leap year
            raise ValueError(f"{value!r} is no day of the year")
        return value
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    return _iso(value)


def _iso(value: Any) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(
            f'expected a date (YYYY-MM-DD) or a month-day every year ("MM-DD"), got {value!r}'
        ) from None


Bound = Annotated[dt.date | str, Convert(_bound)]


def month_day(day: dt.date) -> str:
    return f"{day.month:02d}-{day.day:02d}"


def occurrence_in_month(day: dt.date) -> tuple[int, int]:
    """Which of its weekday in its month `day` is: counted from the start (1 to 5) and
    from the end (-1 is the last)."""
    days = monthrange(day.year, day.month)[1]
    return (day.day - 1) // 7 + 1, -((days - day.day) // 7 + 1)


class Exception_(Table):
    """A calendar exception: the nights it takes, and the program they run.

    `date` is one night. `from` / `until` bound a range of nights (inclusive; either
    end may be left open), alone or with `weekdays` (those weekdays within the
    range); `weekdays` alone is every week. Both ends may instead be month-days
    (`"12-08"`), a range every year, which wraps over New Year when `until` comes
    before `from`; in a year without 29 February, a yearly range from 02-29 starts on
    1 March and one until 02-29 ends on 28 February. `occurrences` narrows `weekdays`
    to those of the month: 1 to 5 counted from its start, -1 its last. The night of
    date D is D's (it runs into the morning of D+1), so a range takes the nights that
    start on its dates."""

    date: dt.date | None = None
    from_: Bound | None = Field(default=None, alias="from")  # `from` is a Python keyword
    until: Bound | None = None
    weekdays: list[str] = Field(default_factory=list)
    occurrences: list[int] = Field(default_factory=list, max_length=6)
    program: str
    groups: list[str] = Field(default_factory=list)  # empty: every group that is not a corridor

    @check("weekdays")
    @classmethod
    def _weekdays(cls, value: list[str]) -> list[str]:
        bad = [d for d in value if d not in WEEKDAYS]
        if bad:
            raise ValueError(f"unknown weekday(s) {bad}: use {', '.join(WEEKDAYS)}")
        return value

    @check("occurrences")
    @classmethod
    def _occurrences(cls, value: list[int]) -> list[int]:
        bad = [n for n in value if n not in OCCURRENCES]
        if bad:
            raise ValueError(
                f"unknown occurrence(s) {bad}: use 1 to 5 (from the month's start) or -1 (its last)"
            )
        if len(set(value)) != len(value):
            raise ValueError(f"occurrences {value} repeat one")
        return value

    @check_table
    def _when(self) -> None:
        name = f"exception for program {self.program!r}"
        first, last = self.from_, self.until
        if self.date is not None and (first is not None or last is not None):
            raise ValueError(
                f"{name}: date {self.date} together with from/until (an exception is one "
                "date or a range, not both)"
            )
        yearly = [b for b in (first, last) if isinstance(b, str)]
        if yearly and len(yearly) != 2:
            raise ValueError(
                f"{name}: from {_shown(first)} and until {_shown(last)}: a range every year "
                'needs both ends as month-days ("MM-DD"); a range of dates both as dates'
            )
        if isinstance(first, dt.date) and isinstance(last, dt.date) and last < first:
            raise ValueError(f"{name}: until {last} is before from {first}")
        if self.occurrences and not self.weekdays:
            raise ValueError(f"{name}: occurrences {self.occurrences} need weekdays")
        if self.date is None and first is None and last is None and not self.weekdays:
            raise ValueError(f"{name} needs a date, a range (from, until) or weekdays")

    def takes(self, night: dt.date) -> bool:
        """Whether the night that starts on `night` is one of this exception's."""
        if self.date is not None:
            return self.date == night  # a date alone decides (weekdays are not looked at)
        first, last = self.from_, self.until
        if isinstance(first, str) and isinstance(last, str):
            today = month_day(night)  # "MM-DD" compares as the calendar runs
            inside = first <= today <= last if first <= last else today >= first or today <= last
            if not inside:
                return False
        else:
            if isinstance(first, dt.date) and night < first:
                return False
            if isinstance(last, dt.date) and night > last:
                return False
        if self.weekdays and WEEKDAYS[night.weekday()] not in self.weekdays:
            return False
        return not self.occurrences or not set(occurrence_in_month(night)).isdisjoint(
            self.occurrences
        )


def _shown(bound: dt.date | str | None) -> str:
    return "(open)" if bound is None else repr(bound) if isinstance(bound, str) else str(bound)


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
    # clock seconds between checks when no step is due (re-sends, faults, retries)
    recheck_s: float = Field(default=30.0, ge=0.5, le=3600)
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
        raise FileProblems.from_invalid(source, err, ("lighting",)) from None
