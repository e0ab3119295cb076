"""Lighting programs evaluated against the sun at the gateway's place.

Loads astral (sun times): imported only by a gateway with a `[lighting]` table.
"""

from __future__ import annotations

import datetime as dt
import itertools
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from astral import Observer
from astral.sun import sun

from cityedge.gateway.lighting.program import TIME_SPEC, Group, Lighting, Program


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
    """The program `group` runs the night that starts on `night`: the first exception
    that takes the group and the night, else the group's own."""
    for exc in lighting.exceptions:
        applies = group.name in exc.groups if exc.groups else not group.corridor
        if applies and exc.takes(night):
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
