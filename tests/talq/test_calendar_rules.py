"""TALQ calendar rules → lighting exceptions, rule by rule (`translate`): dates and
open ends, ranges every year (--MM-DD), weekdays within dates and their occurrences in
the month, ccDate expanded between the rule's dates, and the refusals that say why.
The documents made here are validated by the lighting tables."""

from __future__ import annotations

from typing import Any

import pytest

from cityedge.gateway.lighting import load_lighting
from cityedge.gateway.talq import translate
from cityedge.gateway.talq.errors import TalqError

BASE: dict[str, Any] = {
    "version": 1,
    "programs": {"p0": {"steps": [{"at": "sunset", "level": 1}]}},
    "groups": [{"name": "g", "devices": ["lamp"], "program": "p0"}],
}
PROGRAMS = {
    name: {"id": name, "type": "ControlProgramOne",
           "astroClockTimeControls": [{"solarEventType": "sunset", "offset": 0,
                                       "command": {"state": {"name": "LevelState", "value": 50}}}]}
    for name in ("d", "r")
}  # fmt: skip


def exceptions(*rules: dict[str, Any]) -> list[dict[str, Any]]:
    calendar = {"id": "c", "defaultProgram": "d", "rules": [{"program": "r", **r} for r in rules]}
    doc = translate.lighting_document(BASE, {"c": calendar}, PROGRAMS, {"lamp": "c"})
    load_lighting(doc)  # the controller would take it
    return [{k: v for k, v in e.items() if k not in ("program", "groups")}
            for e in doc["exceptions"]]  # fmt: skip


def refusal(*rules: dict[str, Any]) -> TalqError:
    with pytest.raises(TalqError) as info:
        exceptions(*rules)
    return info.value


WEEKEND = {"type": "ccDay", "days": [{"start": 6, "end": 7}]}


def test_dates_and_open_ends() -> None:
    assert exceptions({"startDate": "2026-12-31", "endDate": "2026-12-31"}) == [
        {"date": "2026-12-31"}
    ]
    assert exceptions({"startDate": "2026-12-08", "endDate": "2027-01-06"}) == [
        {"from": "2026-12-08", "until": "2027-01-06"}
    ]
    assert exceptions({"startDate": "2026-12-08"}) == [{"from": "2026-12-08"}]
    # the data model's defaults, --01-01 and --12-31, are open ends too
    assert exceptions({"startDate": "--01-01", "endDate": "2027-01-06"}) == [
        {"until": "2027-01-06"}
    ]
    # unconditional and for ever: every night
    assert exceptions({}) == [{"weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}]


def test_weekdays_within_the_rules_dates() -> None:
    assert exceptions({"startDate": "2026-06-01", "endDate": "2026-08-31",
                       "condition": WEEKEND}) == [
        {"from": "2026-06-01", "until": "2026-08-31", "weekdays": ["sat", "sun"]}
    ]  # fmt: skip
    assert exceptions({"condition": WEEKEND}) == [{"weekdays": ["sat", "sun"]}]


def test_yearly_ranges_become_month_day_ranges() -> None:
    # the festive season every year, across New Year
    assert exceptions({"startDate": "--12-08", "endDate": "--01-06"}) == [
        {"from": "12-08", "until": "01-06"}
    ]
    # one yearly bound: the other open end is its year's first or last day
    assert exceptions({"startDate": "--06-01"}) == [{"from": "06-01", "until": "12-31"}]
    assert exceptions({"startDate": "--01-01", "endDate": "--02-29"}) == [
        {"from": "01-01", "until": "02-29"}
    ]
    # the same day every year is a one-day range, not a date
    assert exceptions({"startDate": "--12-24", "endDate": "--12-24"}) == [
        {"from": "12-24", "until": "12-24"}
    ]
    # summer weekends every year
    assert exceptions({"startDate": "--06-01", "endDate": "--08-31", "condition": WEEKEND}) == [
        {"from": "06-01", "until": "08-31", "weekdays": ["sat", "sun"]}
    ]


def test_occurrences_of_weekdays_in_the_month() -> None:
    first_saturday = {"type": "ccDay", "days": [{"start": 6}], "occurrences": ["1"]}
    assert exceptions({"condition": first_saturday}) == [{"weekdays": ["sat"], "occurrences": [1]}]
    last_friday_and_second = {"type": "ccDay", "days": [{"start": 5}],
                              "occurrences": ["L", "2"]}  # fmt: skip
    assert exceptions({"startDate": "--04-01", "endDate": "--09-30",
                       "condition": last_friday_and_second}) == [
        {"from": "04-01", "until": "09-30", "weekdays": ["fri"], "occurrences": [-1, 2]}
    ]  # fmt: skip
    # no occurrences (or an empty list): every week
    assert exceptions({"condition": {**first_saturday, "occurrences": []}}) == [
        {"weekdays": ["sat"]}
    ]


def test_ccdate_between_full_dates() -> None:
    mid_month = {"type": "ccDate", "dates": [{"start": "---15"}, {"start": "---30",
                                                                   "end": "---31"}]}  # fmt: skip
    assert exceptions({"startDate": "2028-01-01", "endDate": "2028-03-31",
                       "condition": mid_month}) == [
        {"date": "2028-01-15"}, {"from": "2028-01-30", "until": "2028-01-31"},
        {"date": "2028-02-15"}, {"date": "2028-03-15"},
        {"from": "2028-03-30", "until": "2028-03-31"},
    ]  # fmt: skip
    leap = {"type": "ccDate", "dates": [{"start": "--02-29"}]}
    assert exceptions({"startDate": "2027-01-01", "endDate": "2029-12-31",
                       "condition": leap}) == [{"date": "2028-02-29"}]  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "key", "says"),
    [
        ({"startDate": "2027-01-06", "endDate": "2026-12-08"}, "payloadError",
         "endDate 2026-12-08 is before startDate 2027-01-06"),
        ({"startDate": "--12-08", "endDate": "2027-01-06"}, "serviceConstraintExceeded",
         "a range every year (--MM-DD) or between dates, not both (endDate '2027-01-06'"),
        ({"startDate": "2026-12-08", "endDate": "--01-06"}, "serviceConstraintExceeded",
         "not both (startDate '2026-12-08' is a date)"),
        ({"startDate": "--02-30"}, "payloadError", "'--02-30' is no day of the year"),
        ({"startDate": "--12-01", "endDate": "--12-31",
          "condition": {"type": "ccDate", "dates": [{"start": "--12-25"}]}},
         "serviceConstraintExceeded", "recurs for ever (or every year)"),
        ({"startDate": "2026-02-30"}, "payloadError", "'2026-02-30' is no date"),
        ({"condition": {"type": "ccDate", "dates": [{"start": "--12-25"}]}},
         "serviceConstraintExceeded", "recurs for ever"),
        ({"startDate": "2026-01-01", "endDate": "2026-12-31",
          "condition": {"type": "ccDate", "dates": [{"start": "--12-26", "end": "--12-24"}]}},
         "payloadError", "the end must be of the start's kind and after it"),
        ({"startDate": "2026-01-01", "endDate": "2036-12-31",
          "condition": {"type": "ccDate", "dates": [{"start": "--12-25"}]}},
         "serviceConstraintExceeded", "3660 days at most"),
        ({"startDate": "2026-01-01", "endDate": "2031-12-31",
          "condition": {"type": "ccDate", "dates": [{"start": "---01"}]}},
         "serviceConstraintExceeded", "72 separate dates or ranges"),
        ({"condition": {"type": "ccDay", "days": []}}, "payloadError", "names no day"),
        ({"condition": {"type": "ccDay", "days": [{"start": 1}], "occurrences": ["6"]}},
         "payloadError", "occurrence '6': use '1' to '5' or 'L'"),
        ({"condition": {"type": "ccWeek"}}, "serviceConstraintExceeded",
         "condition 'ccWeek'"),
    ],
)  # fmt: skip
def test_what_cannot_be_run_is_refused_with_the_reason(
    rule: dict[str, Any], key: str, says: str
) -> None:
    err = refusal(rule)
    assert (err.status, err.key) == (422, key)
    assert says in err.description


def test_the_running_documents_exceptions_leave_a_calendars_lamps_alone() -> None:
    """A festive range in the config runs on the config's lamps, not on the lamps a
    TALQ calendar claimed: those follow the CMS alone."""
    base = {
        **BASE,
        "groups": [
            {"name": "g", "devices": ["lamp", "other"], "program": "p0"},
            {"name": "wild", "devices": ["fox"], "program": "p0", "corridor": True},
        ],
        "exceptions": [
            {"from": "2026-12-08", "until": "2027-01-06", "program": "p0"},
            {"date": "2026-12-31", "program": "p0", "groups": ["wild"]},
        ],
    }
    calendar = {"id": "c", "defaultProgram": "d", "rules": []}
    doc = translate.lighting_document(base, {"c": calendar}, PROGRAMS, {"lamp": "c"})
    lighting = load_lighting(doc)
    assert [(e["program"], e["groups"]) for e in doc["exceptions"]] == [
        ("p0", ["g"]),  # spelled out: the calendar's group is not among them
        ("p0", ["wild"]),
    ]
    calendar_group = next(g for g in lighting.groups if g.devices == ["lamp"])
    assert calendar_group.name not in {n for e in lighting.exceptions for n in e.groups}
