"""Whatever JSON a CMS sends as a control program, calendar or logger configuration,
the gateway answers with a TALQ refusal or takes it: the translation and the
reporting never fail otherwise (hypothesis)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cityedge.gateway.lighting import load_lighting
from cityedge.gateway.talq import translate
from cityedge.gateway.talq.core import TalqCore
from cityedge.gateway.talq.errors import TalqError
from cityedge.gateway.talq.reports import Reporter
from cityedge.gateway.talq.section import TalqSection
from cityedge.gateway.talq.store import TalqStore
from cityedge.sdk.model import DeviceInfo, Event, PointInfo, Reading

SCALARS = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=12)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=5),
    max_leaves=20,
)  # fmt: skip
KEYS = st.sampled_from(["type", "id", "activePeriods", "astroClockTimeControls",
                        "fixedTimeControls", "name", "sunsetOffset", "sunriseOffset",
                        "startTime", "endTime", "command", "state", "value", "offset",
                        "solarEventType", "rules", "defaultProgram", "program", "condition",
                        "days", "start", "end", "startDate", "endDate", "occurrences",
                        "dates"])  # fmt: skip
TALQISH = st.recursive(
    SCALARS | st.sampled_from(["ControlProgramOne", "AstroClockActivePeriod", "LevelState",
                               "ccDay", "ccDate", "sunset", "23:00:00", "p", "2026-12-08",
                               "2027-01-06", "--12-25", "---15", "--12-08", "--01-06",
                               "--02-29", "--01-01", "--12-31", "L", "1", "5"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=30,
)  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(doc=st.dictionaries(KEYS, TALQISH, max_size=6) | st.dictionaries(st.text(), JSON))
def test_any_control_program_is_translated_or_refused(doc: dict[str, Any]) -> None:
    try:
        out = translate.program(doc)
    except TalqError as err:
        assert err.status in (400, 422) and err.description
        return
    assert out["steps"] and isinstance(out["off"], str)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(calendar=st.dictionaries(KEYS, TALQISH, max_size=6), program=TALQISH)
def test_any_calendar_is_translated_or_refused(calendar: dict[str, Any], program: Any) -> None:
    base = {"version": 1, "programs": {"p0": {"steps": [{"at": "sunset", "level": 1}]}},
            "groups": [{"name": "g", "devices": ["lamp"], "program": "p0"}]}  # fmt: skip
    try:
        translate.lighting_document(base, {"c": calendar}, {"p": program}, {"lamp": "c"})
    except TalqError as err:
        assert err.status in (400, 422)


BOUNDS = st.none() | st.sampled_from(["2026-12-08", "2027-01-06", "2028-02-29", "--01-01",
                                        "--12-31", "--12-08", "--01-06", "--02-29", "--02-30",
                                        "--13-01", "2026-02-30", "12-08", ""])  # fmt: skip
DAYS = st.lists(st.fixed_dictionaries({"start": st.integers(0, 8)},
                                      optional={"end": st.integers(0, 8)}), max_size=3)  # fmt: skip
OCCURRENCES = st.lists(st.sampled_from(["1", "2", "3", "4", "5", "L", "0", "6", "l", 1]),
                       max_size=4)  # fmt: skip
CONDITIONS = (
    st.none()
    | st.fixed_dictionaries({"type": st.just("ccDay"), "days": DAYS},
                            optional={"occurrences": OCCURRENCES})
    | st.fixed_dictionaries({"type": st.just("ccDate"),
                             "dates": st.lists(st.fixed_dictionaries(
                                 {"start": st.sampled_from(["---15", "--12-25", "--02-29"])}),
                                 max_size=2)})
)  # fmt: skip
RULES = st.lists(
    st.fixed_dictionaries({"program": st.just("p")},
                          optional={"startDate": BOUNDS, "endDate": BOUNDS,
                                    "condition": CONDITIONS}),
    max_size=4,
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(rules=RULES, night=st.dates(dt.date(2020, 1, 1), dt.date(2040, 12, 31)))
def test_any_calendar_rules_run_or_are_refused(rules: list[dict[str, Any]], night: dt.date) -> None:
    """Rules of every shape (yearly and full dates, mixed, ccDay with occurrences, bad
    values): refused with a TALQ error, or a document the lighting controller takes."""
    base = {"version": 1, "programs": {"p0": {"steps": [{"at": "sunset", "level": 1}]}},
            "groups": [{"name": "g", "devices": ["lamp"], "program": "p0"}]}  # fmt: skip
    program = {"id": "p", "type": "ControlProgramOne",
               "fixedTimeControls": [{"startTime": "20:00:00",
                                      "command": {"state": {"name": "LevelState",
                                                            "value": 40}}}]}  # fmt: skip
    calendar = {"id": "c", "defaultProgram": "p", "rules": rules}
    try:
        doc = translate.lighting_document(base, {"c": calendar}, {"p": program}, {"lamp": "c"})
    except TalqError as err:
        assert err.status in (400, 422) and err.description
        return
    lit = load_lighting(doc)  # never a document the controller refuses
    assert len(lit.exceptions) >= len(rules) - sum(
        1 for r in rules if r.get("condition") and r["condition"]["type"] == "ccDate"
    )
    for exc in lit.exceptions:
        assert exc.takes(night) in (True, False)


class Agent:
    overrides: Any = None
    lighting: Any = None

    def devices(self) -> dict[str, DeviceInfo]:
        points = {p: PointInfo(p, "int") for p in ("dimming", "lamp_failure", "power")}
        return {"lamp": DeviceInfo("lamp", "lamppost", "street", points)}

    def driver_for(self, device: str) -> None:
        return None


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(logger=st.dictionaries(st.sampled_from(["address", "recordingMode", "sourceAddresses",
                                               "content", "type", "function", "cmsRefId",
                                               "attributes", "name", "whiteList"]),
                              JSON | TALQISH, max_size=5))  # fmt: skip
def test_any_logger_configuration_reports_or_stays_quiet(
    tmp_path_factory: Any, logger: dict[str, Any]
) -> None:
    section = TalqSection.parse({"mode": "test", "gateway_uri": "http://g", "cms_uri": "http://c"})
    store = TalqStore(tmp_path_factory.mktemp("s") / "state.json")
    store.loggers["l"] = logger
    reporter = Reporter(TalqCore(section, Agent(), store, now=lambda: dt.datetime.now(dt.UTC)))
    now = time.time()
    reporter.take([Reading("lamp", "dimming", 50, now), Reading("lamp", "power", 12.5, now),
                   Event("lighting.lamp_failure", "lamp", now, active=True)])  # fmt: skip
    for report in reporter.reports():
        assert report["address"] == "l" and report["entries"]
