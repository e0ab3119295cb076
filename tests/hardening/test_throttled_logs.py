"""`sdk.logs.Throttled`: a flood of one log event is one loud line per key, then a
count per interval — never one line per occurrence."""

from __future__ import annotations

import structlog
from structlog.testing import capture_logs

from cityedge.sdk.logs import MAX_KEYS, Throttled

log = structlog.get_logger("test")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_first_loud_then_counted_then_the_count_with_the_next_line() -> None:
    clock = Clock()
    throttled = Throttled(log, "x.refused", interval=60, clock=clock)
    with capture_logs() as logs:
        assert throttled("bad-mic", detail="first")
        for _ in range(9_999):
            assert not throttled("bad-mic", detail="again")
        assert throttled("replay", detail="another reason is loud on its own")
        clock.now += 61
        assert throttled("bad-mic", detail="after the interval")
    assert logs == [
        {"event": "x.refused", "log_level": "warning", "reason": "bad-mic", "detail": "first"},
        {"event": "x.refused", "log_level": "warning", "reason": "replay",
         "detail": "another reason is loud on its own"},
        {"event": "x.refused", "log_level": "warning", "reason": "bad-mic",
         "detail": "after the interval", "repeated": 9_999, "over_s": 61.0},
    ]  # fmt: skip
    assert throttled.total == 10_002


def test_flush_reports_a_spell_that_ended_without_another_occurrence() -> None:
    clock = Clock()
    throttled = Throttled(log, "uplink.command.shed", level="info", key_field="why", clock=clock)
    with capture_logs() as logs:
        throttled("window", topic="t")
        throttled("window", topic="t")
        throttled.flush()  # the interval is not over: nothing yet
        clock.now += 60
        throttled.flush()
        throttled.flush()  # said once
    assert [(e["log_level"], e.get("repeated")) for e in logs] == [("info", None), ("info", 1)]
    assert logs[1]["why"] == "window" and logs[1]["over_s"] == 60.0


def test_keys_are_bounded() -> None:
    throttled = Throttled(log, "x", clock=Clock())
    with capture_logs() as logs:
        for i in range(MAX_KEYS * 10):
            throttled(f"k{i}")
    assert len(logs) == MAX_KEYS + 1  # the rest share `other`
    assert logs[-1]["reason"] == "other"
    assert len(throttled._spells) == MAX_KEYS + 1
