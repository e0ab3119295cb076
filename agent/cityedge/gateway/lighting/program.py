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
    from = "2026-12-08"
    until = "2027-01-06"
    program = "festive"

The tables only: the config validates `[lighting]` with them on every gateway, so
this module must not load astral; evaluation against the sun is in `schedule`.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from cityedge.sdk.problems import FileProblems
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
    """A calendar exception: the nights it takes, and the program they run.

    `date` is one night. `from` / `until` bound a range of nights (inclusive; either
    end may be left open), alone or with `weekdays` (those weekdays within the
    range); `weekdays` alone is every week. The night of date D is D's (it runs into
    the morning of D+1), so a range takes the nights that start on its dates."""

    date: dt.date | None = None
    from_: dt.date | None = Field(default=None, alias="from")  # `from` is a Python keyword
    until: dt.date | None = None
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
        if self.date is not None and (self.from_ is not None or self.until is not None):
            raise ValueError(
                f"exception for program {self.program!r}: date {self.date} together with "
                "from/until (an exception is one date or a range, not both)"
            )
        if self.from_ is not None and self.until is not None and self.until < self.from_:
            raise ValueError(
                f"exception for program {self.program!r}: until {self.until} is before "
                f"from {self.from_}"
            )
        if self.date is None and self.from_ is None and self.until is None and not self.weekdays:
            raise ValueError(
                f"exception for program {self.program!r} needs a date, a range "
                "(from, until) or weekdays"
            )

    def takes(self, night: dt.date) -> bool:
        """Whether the night that starts on `night` is one of this exception's."""
        if self.date is not None:
            return self.date == night  # a date alone decides (weekdays are not looked at)
        if self.from_ is not None and night < self.from_:
            return False
        if self.until is not None and night > self.until:
            return False
        return not self.weekdays or WEEKDAYS[night.weekday()] in self.weekdays


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
