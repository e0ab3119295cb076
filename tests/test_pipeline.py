"""The pipeline: report by exception, periodic full report, clock flags (real SQLite outbox)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cityedge.gateway.outbox import Outbox
from cityedge.gateway.pipeline import Pipeline
from cityedge.sdk.model import Event, PointInfo, Quality, Reading, Severity
from tests.support.outbox_probe import open_outbox, stored_entries


def make(tmp_path: Path, full_report: float = 300.0) -> tuple[Pipeline, Outbox]:
    outbox = open_outbox(tmp_path / "o.db", max_bytes=1 << 30, max_age=1e9)
    points = {("lamp-1", "power"): PointInfo("power", "float", "W", deadband=5.0)}
    pipeline = Pipeline(outbox, lambda: points, full_report_interval=full_report,
                        commit_interval=0.1, queue_size=1000)  # fmt: skip
    return pipeline, outbox


def stored(outbox: Outbox) -> list[Any]:
    """The entries of the first kind stored, highest priority first."""
    outbox.commit()
    message = outbox.next_message(live_after=0, backlog=False)
    if message is None:
        return []
    return [e for kind, e in stored_entries(outbox.path) if kind == message.kind]


def test_deadband_reports_by_exception(tmp_path: Path) -> None:
    pipeline, outbox = make(tmp_path)
    now = time.time()
    for i, watts in enumerate([100.0, 102.0, 104.9, 105.0, 99.0, 99.5]):
        pipeline.accept([Reading("lamp-1", "power", watts, now + i, "W")])
    values = [entry[2] for entry in stored(outbox)]
    assert values == [100.0, 105.0, 99.0]
    assert pipeline.stats.suppressed == 3


def test_full_report_interval_sends_unchanged_values(tmp_path: Path) -> None:
    pipeline, outbox = make(tmp_path, full_report=0.0001)
    for i in range(3):
        pipeline.accept([Reading("lamp-1", "power", 100.0, time.time() + i)])
        time.sleep(0.001)
    assert len(stored(outbox)) == 3


def test_events_always_pass_and_bad_items_are_refused(tmp_path: Path) -> None:
    pipeline, outbox = make(tmp_path)
    pipeline.accept([
        Event("lamppost.lamp_failure", "lamp-1", time.time(), Severity.ALARM, True),
        Reading("lamp-1", "power", 1.0, float("nan")),  # a driver bug: NaN time
    ])  # fmt: skip
    assert pipeline.stats.events == 1 and pipeline.stats.refused == 1
    outbox.commit()
    assert outbox.stats().rows == {3: 1}


def test_readings_are_flagged_while_the_clock_is_untrusted(tmp_path: Path) -> None:
    pipeline, outbox = make(tmp_path, full_report=0.0)
    pipeline.accept([Reading("lamp-1", "power", 1.0, time.time())])
    pipeline.clock_trusted = False
    pipeline.accept([Reading("lamp-1", "power", 50.0, time.time())])
    pipeline.clock_trusted = True
    pipeline.accept([Reading("lamp-1", "power", 90.0, 86400.0)])  # 1970: booted without RTC
    qualities = [entry[5] if len(entry) > 5 else Quality.GOOD for entry in stored(outbox)]
    assert qualities == [Quality.GOOD, Quality.CLOCK_UNSYNCED, Quality.CLOCK_UNSYNCED]
    assert pipeline.stats.clock_flagged == 2


def test_a_change_of_exactly_the_deadband_always_passes(tmp_path: Path) -> None:
    """The lamppost's energy counter (uint32, 0.01 kWh steps, deadband 0.01) decoded as
    the Modbus driver decodes it: every single step is a change of exactly the deadband,
    and 1234.57 - 1234.56 is 0.00999999999999 in floats."""
    from cityedge.drivers.modbus.codec import decode
    from cityedge.drivers.modbus.profile import resolve_profile

    energy = resolve_profile("lamppost").points["energy"]
    assert energy.info().deadband == 0.01
    outbox = open_outbox(tmp_path / "o.db", max_bytes=1 << 30, max_age=1e9)
    points = {("lamp-1", "energy"): energy.info()}
    pipeline = Pipeline(outbox, lambda: points, full_report_interval=300.0,
                        commit_interval=0.1, queue_size=1000)  # fmt: skip
    now = time.time()
    raws = range(123_456, 123_456 + 1_071)  # 1,070 increments
    for i, raw in enumerate(raws):
        value = decode(energy, [raw >> 16, raw & 0xFFFF])
        pipeline.accept([Reading("lamp-1", "energy", value, now + i, "kWh")])
    assert pipeline.stats.suppressed == 0
    assert len(stored(outbox)) == 1_071
    # and a change below the deadband is still held back
    half_step = round(float(value) + 0.005, 3)
    pipeline.accept([Reading("lamp-1", "energy", half_step, now + 2_000, "kWh")])
    assert pipeline.stats.suppressed == 1
