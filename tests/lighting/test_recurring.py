"""Calendar exceptions that recur: ranges of month-days every year (across New Year,
on 29 February in leap and common years) and weekdays narrowed to their occurrences
in the month (the first Saturday, the last Friday, in months of 28 to 31 days)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.gateway.config import ConfigError
from cityedge.gateway.lighting import load_lighting
from cityedge.gateway.lighting.program import OCCURRENCES, WEEKDAYS, Exception_, Lighting
from cityedge.gateway.lighting.schedule import program_for

PROGRAMS = {
    "standard": {"steps": [{"at": "sunset", "level": 60}]},
    "festive": {"steps": [{"at": "sunset", "level": 100}]},
    "market": {"steps": [{"at": "sunset", "level": 90}]},
}
GROUPS = [{"name": "street", "devices": ["lamppost-001"], "program": "standard"}]


def lighting(*exceptions: dict[str, Any]) -> Lighting:
    return load_lighting({"programs": PROGRAMS, "groups": GROUPS, "exceptions": list(exceptions)})


def nights(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def taken(exc: Exception_, first: dt.date, last: dt.date) -> list[dt.date]:
    return [d for d in nights(first, last) if exc.takes(d)]


FESTIVE = {"from": "12-08", "until": "01-06", "program": "festive"}


def yearly(first: str, last: str, **more: Any) -> Exception_:
    return Exception_.parse({"from": first, "until": last, "program": "festive", **more})


def test_a_yearly_range_wraps_over_new_year_every_year() -> None:
    lit = lighting(FESTIVE)
    street = lit.groups[0]
    for year in (2026, 2027, 2099):
        season = [d for d in nights(dt.date(year, 1, 1), dt.date(year, 12, 31))
                  if program_for(lit, street, d) == "festive"]  # fmt: skip
        assert season == nights(dt.date(year, 1, 1), dt.date(year, 1, 6)) + nights(
            dt.date(year, 12, 8), dt.date(year, 12, 31)
        )


def test_a_yearly_range_within_the_year_and_one_day_every_year() -> None:
    summer = yearly("06-01", "08-31")
    assert taken(summer, dt.date(2027, 1, 1), dt.date(2027, 12, 31)) == nights(
        dt.date(2027, 6, 1), dt.date(2027, 8, 31)
    )
    eve = yearly("12-24", "12-24")
    assert taken(eve, dt.date(2026, 1, 1), dt.date(2028, 12, 31)) == [
        dt.date(2026, 12, 24), dt.date(2027, 12, 24), dt.date(2028, 12, 24)
    ]  # fmt: skip
    everything = yearly("01-01", "12-31")
    assert taken(everything, dt.date(2028, 1, 1), dt.date(2028, 12, 31)) == nights(
        dt.date(2028, 1, 1), dt.date(2028, 12, 31)
    )


def test_29_february_in_leap_and_common_years() -> None:
    until_leap_day = yearly("02-20", "02-29")
    assert taken(until_leap_day, dt.date(2028, 2, 1), dt.date(2028, 3, 31))[-1] == dt.date(
        2028, 2, 29
    )
    # in a common year the range ends on 28 February
    assert taken(until_leap_day, dt.date(2027, 2, 1), dt.date(2027, 3, 31))[-1] == dt.date(
        2027, 2, 28
    )
    # and one from 29 February starts on 1 March
    from_leap_day = yearly("02-29", "03-03")
    assert taken(from_leap_day, dt.date(2027, 2, 1), dt.date(2027, 3, 31)) == nights(
        dt.date(2027, 3, 1), dt.date(2027, 3, 3)
    )
    assert taken(from_leap_day, dt.date(2028, 2, 1), dt.date(2028, 3, 31)) == nights(
        dt.date(2028, 2, 29), dt.date(2028, 3, 3)
    )
    # the leap day alone: only in leap years (2100 is not one)
    leap_day = yearly("02-29", "02-29")
    assert taken(leap_day, dt.date(2027, 1, 1), dt.date(2100, 12, 31)) == [
        dt.date(y, 2, 29) for y in range(2028, 2100, 4)
    ]


def test_weekdays_within_a_yearly_range() -> None:
    summer_weekends = yearly("06-01", "08-31", weekdays=["sat", "sun"])
    assert summer_weekends.takes(dt.date(2026, 7, 4))  # a Saturday
    assert not summer_weekends.takes(dt.date(2026, 7, 6))  # a Monday
    assert not summer_weekends.takes(dt.date(2026, 9, 5))  # a Saturday after
    assert summer_weekends.takes(dt.date(2031, 8, 31))  # a Sunday, years on


@pytest.mark.parametrize(
    ("month", "last_friday"),
    [
        ((2026, 2), 27),  # 28 days, starting on a Sunday
        ((2028, 2), 25),  # 29 days
        ((2026, 4), 24),  # 30 days
        ((2026, 7), 31),  # 31 days, the last day a Friday
        ((2027, 12), 31),  # across New Year's Eve
    ],
)
def test_the_last_weekday_of_months_of_every_length(
    month: tuple[int, int], last_friday: int
) -> None:
    last = Exception_.parse({"weekdays": ["fri"], "occurrences": [-1], "program": "festive"})
    year, number = month
    days = [d for d in nights(dt.date(year, number, 1), dt.date(year, number, 28) + dt.timedelta(3))
            if d.month == number]  # fmt: skip
    assert [d.day for d in days if last.takes(d)] == [last_friday]


def test_the_first_and_third_saturday_market() -> None:
    lit = lighting({"weekdays": ["sat"], "occurrences": [1, 3], "program": "market"})
    street = lit.groups[0]
    markets = [d for d in nights(dt.date(2026, 8, 1), dt.date(2026, 9, 30))
               if program_for(lit, street, d) == "market"]  # fmt: skip
    assert markets == [dt.date(2026, 8, 1), dt.date(2026, 8, 15),
                       dt.date(2026, 9, 5), dt.date(2026, 9, 19)]  # fmt: skip
    # a fifth occurrence only where the month has one
    fifth = Exception_.parse({"weekdays": ["sat"], "occurrences": [5], "program": "market"})
    assert taken(fifth, dt.date(2026, 8, 1), dt.date(2026, 9, 30)) == [dt.date(2026, 8, 29)]


def test_yearly_ranges_and_occurrences_survive_the_pushed_document_round_trip() -> None:
    last_friday = {"weekdays": ["fri"], "occurrences": [-1], "program": "market"}
    summer = {"from": dt.date(2026, 6, 1), "until": "2026-08-31", "program": "market"}
    lit = lighting(FESTIVE, last_friday, summer)
    dumped = lit.dump()
    assert dumped["exceptions"][0]["from"] == "12-08"
    assert dumped["exceptions"][1]["occurrences"] == [-1]
    assert dumped["exceptions"][2]["until"] == "2026-08-31"
    assert load_lighting(dumped) == lit


@pytest.mark.parametrize(
    ("exception", "says"),
    [
        ({"from": "12-08", "until": "2027-01-06", "program": "festive"},
         "lighting.exceptions[0]: exception for program 'festive': from '12-08' and until "
         "2027-01-06: a range every year needs both ends as month-days"),
        ({"from": "12-08", "program": "festive"},
         "from '12-08' and until (open): a range every year needs both ends"),
        ({"from": "02-30", "until": "03-01", "program": "festive"},
         "lighting.exceptions[0].from: '02-30' is no day of the year"),
        ({"from": "13-01", "until": "12-31", "program": "festive"},
         "lighting.exceptions[0].from: '13-01' is no day of the year"),
        ({"from": "--12-08", "until": "01-06", "program": "festive"},
         "lighting.exceptions[0].from: expected a date (YYYY-MM-DD) or a month-day every "
         "year (\"MM-DD\"), got '--12-08'"),
        ({"date": "2026-12-08", "until": "01-06", "program": "festive"},
         "date 2026-12-08 together with from/until"),
        ({"occurrences": [1], "program": "festive"},
         "lighting.exceptions[0]: exception for program 'festive': occurrences [1] need weekdays"),
        ({"weekdays": ["sat"], "occurrences": [0], "program": "festive"},
         "lighting.exceptions[0].occurrences: unknown occurrence(s) [0]: use 1 to 5"),
        ({"weekdays": ["sat"], "occurrences": [1, 1], "program": "festive"},
         "lighting.exceptions[0].occurrences: occurrences [1, 1] repeat one"),
    ],
)  # fmt: skip
def test_invalid_recurring_exceptions_are_named(exception: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as info:
        lighting(exception)
    assert says in str(info.value)


MONTH_DAYS = st.dates(dt.date(2028, 1, 1), dt.date(2028, 12, 31)).map(
    lambda d: f"{d.month:02d}-{d.day:02d}"
)


@settings(max_examples=200, deadline=None)
@given(
    first=MONTH_DAYS, last=MONTH_DAYS, year=st.integers(1990, 2200), other=st.integers(1990, 2200)
)
def test_a_yearly_range_takes_the_same_month_days_every_year(
    first: str, last: str, year: int, other: int
) -> None:
    exc = yearly(first, last)

    def month_days(y: int) -> set[str]:
        days = taken(exc, dt.date(y, 1, 1), dt.date(y, 12, 31))
        return {f"{d.month:02d}-{d.day:02d}" for d in days} - {"02-29"}

    assert month_days(year) == month_days(other)
    wraps = last < first
    for md in month_days(year):
        assert (md >= first or md <= last) if wraps else first <= md <= last


@settings(max_examples=200, deadline=None)
@given(
    day=st.dates(dt.date(1990, 1, 1), dt.date(2200, 12, 31)),
    weekdays=st.lists(st.sampled_from(WEEKDAYS), unique=True, min_size=1, max_size=7),
    occurrences=st.lists(st.sampled_from(OCCURRENCES), unique=True, min_size=1),
)
def test_an_occurrence_is_counted_within_its_month(
    day: dt.date, weekdays: list[str], occurrences: list[int]
) -> None:
    exc = Exception_.parse({"weekdays": weekdays, "occurrences": occurrences, "program": "x"})
    week = dt.timedelta(days=7)
    before = sum(1 for n in range(1, 6) if (day - n * week).month == day.month)
    after = sum(1 for n in range(1, 6) if (day + n * week).month == day.month)
    wanted = WEEKDAYS[day.weekday()] in weekdays and (
        before + 1 in occurrences or (after == 0 and -1 in occurrences)
    )
    assert exc.takes(day) == wanted
