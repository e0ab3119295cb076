"""Calendar exceptions over date ranges: the nights a range takes (across New Year,
on a leap day, weekdays within it), first match wins, and the errors that name
the exception. A night belongs to the date it starts on (docs/lighting.md)."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.gateway.config import ConfigError
from cityedge.gateway.lighting import Sky, level_at, load_lighting
from cityedge.gateway.lighting.program import WEEKDAYS, Exception_, Lighting
from cityedge.gateway.lighting.schedule import program_for

SKY = Sky(45.4642, 9.19, "Europe/Rome")
PROGRAMS = {
    "standard": {"steps": [{"at": "sunset", "level": 60}]},
    "festive": {"steps": [{"at": "sunset", "level": 100}]},
    "weekend": {"steps": [{"at": "sunset", "level": 80}]},
    "leap": {"steps": [{"at": "sunset", "level": 90}]},
    "corridor": {"steps": [{"at": "sunset+20", "level": 20}]},
}
GROUPS = [
    {"name": "street", "devices": ["lamppost-001"], "program": "standard"},
    {"name": "park", "devices": ["lamppost-002"], "program": "corridor", "corridor": True},
]


def lighting(*exceptions: dict[str, Any]) -> Lighting:
    return load_lighting({"programs": PROGRAMS, "groups": GROUPS, "exceptions": list(exceptions)})


def nights(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


FESTIVE = {"from": "2026-12-08", "until": "2027-01-06", "program": "festive"}
SUMMER_WEEKENDS = {"from": dt.date(2026, 6, 1), "until": dt.date(2026, 8, 31),
                   "weekdays": ["sat", "sun"], "program": "weekend"}  # fmt: skip


def test_a_range_across_new_year_takes_its_nights_and_no_others() -> None:
    lit = lighting(FESTIVE)
    street, park = lit.groups
    taken = [d for d in nights(dt.date(2026, 11, 1), dt.date(2027, 2, 28))
             if program_for(lit, street, d) == "festive"]  # fmt: skip
    assert taken == nights(dt.date(2026, 12, 8), dt.date(2027, 1, 6))
    assert program_for(lit, park, dt.date(2026, 12, 31)) == "corridor"  # corridors skipped


def test_the_last_night_of_a_range_runs_into_the_morning_after() -> None:
    lit = lighting(FESTIVE)
    street = lit.groups[0]
    # 02:00 on 7 January is still the night of 6 January: festive
    assert level_at(lit, street, dt.datetime(2027, 1, 7, 2, tzinfo=SKY.tz), SKY)[0::2] == (
        100,
        "festive",
    )
    # the night of 7 January is the group's own again
    assert level_at(lit, street, dt.datetime(2027, 1, 7, 22, tzinfo=SKY.tz), SKY)[0::2] == (
        60,
        "standard",
    )
    # 02:00 on 8 December is the night of 7 December: not yet
    assert level_at(lit, street, dt.datetime(2026, 12, 8, 2, tzinfo=SKY.tz), SKY)[2] == "standard"


def test_weekdays_within_a_range() -> None:
    lit = lighting(SUMMER_WEEKENDS)
    street = lit.groups[0]
    assert program_for(lit, street, dt.date(2026, 7, 4)) == "weekend"  # a Saturday
    assert program_for(lit, street, dt.date(2026, 7, 5)) == "weekend"  # a Sunday
    assert program_for(lit, street, dt.date(2026, 7, 6)) == "standard"  # a Monday
    assert program_for(lit, street, dt.date(2026, 5, 30)) == "standard"  # a Saturday before
    assert program_for(lit, street, dt.date(2026, 9, 5)) == "standard"  # a Saturday after
    assert program_for(lit, street, dt.date(2026, 8, 30)) == "weekend"  # the last Sunday


def test_a_leap_day_and_open_ends() -> None:
    lit = lighting(
        {"from": "2028-02-29", "until": "2028-02-29", "program": "leap"},
        {"until": "2026-01-31", "program": "weekend"},  # every night up to then
        {"from": "2029-03-01", "weekdays": ["fri"], "program": "festive"},  # Fridays on
    )
    street = lit.groups[0]
    assert program_for(lit, street, dt.date(2028, 2, 29)) == "leap"
    assert program_for(lit, street, dt.date(2028, 2, 28)) == "standard"
    assert program_for(lit, street, dt.date(2028, 3, 1)) == "standard"
    assert program_for(lit, street, dt.date(2020, 5, 5)) == "weekend"
    assert program_for(lit, street, dt.date(2026, 1, 31)) == "weekend"
    assert program_for(lit, street, dt.date(2026, 2, 1)) == "standard"
    assert program_for(lit, street, dt.date(2029, 3, 2)) == "festive"  # a Friday
    assert program_for(lit, street, dt.date(2040, 3, 2)) == "festive"  # a Friday
    assert program_for(lit, street, dt.date(2029, 2, 23)) == "standard"  # a Friday before


def test_first_match_wins_and_old_documents_read_as_before() -> None:
    lit = lighting(
        {"date": "2026-12-31", "program": "weekend"},  # a date inside the range, listed first
        FESTIVE,
        {"weekdays": ["sat"], "program": "leap"},
    )
    street = lit.groups[0]
    assert program_for(lit, street, dt.date(2026, 12, 31)) == "weekend"
    assert program_for(lit, street, dt.date(2026, 12, 12)) == "festive"  # a Saturday in range
    assert program_for(lit, street, dt.date(2027, 1, 9)) == "leap"  # a Saturday after it
    # a document written before ranges existed (no from/until) reads and runs the same
    old = {"date": "2026-12-31", "weekdays": ["mon"], "program": "festive"}
    assert program_for(lighting(old), street, dt.date(2026, 12, 31)) == "festive"
    assert program_for(lighting(old), street, dt.date(2026, 12, 28)) == "standard"


def test_a_range_survives_the_pushed_document_round_trip() -> None:
    lit = lighting(FESTIVE, SUMMER_WEEKENDS)
    dumped = lit.dump()
    assert dumped["exceptions"][0]["from"] == "2026-12-08"  # the key as written: `from`
    assert dumped["exceptions"][0]["until"] == "2027-01-06"
    assert load_lighting(dumped) == lit


@pytest.mark.parametrize(
    ("exception", "says"),
    [
        ({"from": "2026-12-08", "until": "2026-12-01", "program": "festive"},
         "lighting.exceptions[1]: exception for program 'festive': until 2026-12-01 is before "
         "from 2026-12-08"),
        ({"date": "2026-12-08", "until": "2026-12-10", "program": "festive"},
         "lighting.exceptions[1]: exception for program 'festive': date 2026-12-08 together "
         "with from/until"),
        ({"program": "festive"},
         "lighting.exceptions[1]: exception for program 'festive' needs a date, a range"),
        ({"from": "2026-13-01", "program": "festive"}, "lighting.exceptions[1].from"),
        ({"from": "2026-12-08", "weekdays": ["sab"], "program": "festive"},
         "lighting.exceptions[1].weekdays: unknown weekday(s) ['sab']"),
    ],
)  # fmt: skip
def test_invalid_exceptions_are_named(exception: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as info:
        lighting({"date": "2026-12-31", "program": "festive"}, exception)
    assert says in str(info.value)


@settings(max_examples=200, deadline=None)
@given(
    first=st.dates(dt.date(2000, 1, 1), dt.date(2100, 12, 31)),
    length=st.integers(0, 800),
    weekdays=st.lists(st.sampled_from(WEEKDAYS), unique=True, max_size=7),
    probe=st.integers(-30, 830),
)
def test_a_range_takes_exactly_its_dates(
    first: dt.date, length: int, weekdays: list[str], probe: int
) -> None:
    last = first + dt.timedelta(days=length)
    exc = Exception_(program="festive", from_=first, until=last, weekdays=weekdays)
    night = first + dt.timedelta(days=probe)
    inside = first <= night <= last
    wanted = not weekdays or WEEKDAYS[night.weekday()] in weekdays
    assert exc.takes(night) == (inside and wanted)


def test_the_documented_example_loads_and_means_what_the_doc_says() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "lighting.md").read_text()
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    lit = load_lighting(tomllib.loads(block)["lighting"])
    via_roma, river_park = lit.groups
    assert program_for(lit, via_roma, dt.date(2027, 1, 6)) == "festival"
    assert program_for(lit, via_roma, dt.date(2027, 1, 7)) == "standard"
    assert program_for(lit, via_roma, dt.date(2030, 12, 8)) == "festival"  # every year
    assert program_for(lit, via_roma, dt.date(2026, 7, 4)) == "market"  # the first Saturday
    assert program_for(lit, via_roma, dt.date(2026, 7, 11)) == "festival"  # a summer Saturday
    assert program_for(lit, via_roma, dt.date(2026, 9, 12)) == "standard"  # an autumn one
    assert program_for(lit, river_park, dt.date(2026, 9, 5)) == "corridor"  # not its market
    assert program_for(lit, river_park, dt.date(2026, 12, 31)) == "corridor"
