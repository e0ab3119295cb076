"""The line budget alone: golden figures for the shipped junction, the spec's
gap rules, and the meter's window on a fake clock."""

from __future__ import annotations

import pytest

from cityedge.drivers.modbus.budget import (
    FIXED_GAP_ABOVE_19200,
    LineFormat,
    LineMeter,
    line_budget,
    read_frame_sizes,
)
from cityedge.drivers.modbus.planner import ReadRequest
from cityedge.drivers.modbus.points import RegisterKind
from cityedge.drivers.modbus.profile import resolve_profile


def test_bits_per_character_and_gap() -> None:
    assert LineFormat(19200, 8, "E", 1).bits_per_char == 11  # start + 8 + parity + stop
    assert LineFormat(19200, 8, "N", 2).bits_per_char == 11  # what the spec asks without parity
    assert LineFormat(9600, 8, "N", 1).bits_per_char == 10
    assert LineFormat(19200).char_time == pytest.approx(11 / 19200)
    assert LineFormat(19200).standard_gap == pytest.approx(3.5 * 11 / 19200)  # 2.005 ms
    assert LineFormat(9600).standard_gap == pytest.approx(3.5 * 11 / 9600)
    # above 19200 the spec fixes t3.5 at 1.75 ms
    assert LineFormat(38400).standard_gap == FIXED_GAP_ABOVE_19200 == 0.00175
    assert LineFormat(115200).standard_gap == 0.00175
    assert str(LineFormat(19200, 8, "E", 1)) == "19200 8E1"


def test_frame_sizes_of_planned_reads() -> None:
    assert read_frame_sizes(ReadRequest(RegisterKind.HOLDING, 0, 21, ())) == (8, 47)
    assert read_frame_sizes(ReadRequest(RegisterKind.INPUT, 0, 1, ())) == (8, 7)
    assert read_frame_sizes(ReadRequest(RegisterKind.COIL, 0, 8, ())) == (8, 6)
    assert read_frame_sizes(ReadRequest(RegisterKind.DISCRETE, 0, 9, ())) == (8, 7)


def junction_frames() -> list[tuple[int, int]]:
    controller = resolve_profile("traffic-controller").requests
    meter = resolve_profile("energy-meter").requests
    return [read_frame_sizes(r) for r in (*controller, *controller, *meter)]


def test_the_junction_at_19200_8e1() -> None:
    frames = junction_frames()
    assert frames == [(8, 25), (8, 9), (8, 25), (8, 9), (8, 41), (8, 53)]
    budget = line_budget(LineFormat(19200, 8, "E", 1), frames)
    assert budget.transactions == 6 and budget.bytes == 210
    # 210 bytes x 11 bits / 19200 baud = 120.3125 ms, + 12 gaps of 3.5 x 11 / 19200 s
    assert budget.cycle_seconds == pytest.approx(0.1203125 + 12 * 3.5 * 11 / 19200)
    assert budget.cycle_seconds == pytest.approx(0.144375)
    assert budget.max_transactions_per_s == pytest.approx(41.558, abs=0.001)
    assert budget.max_cycles_per_s == pytest.approx(6.926, abs=0.001)


def test_baud_rate_and_gap_move_the_ceiling() -> None:
    frames = junction_frames()
    slow = line_budget(LineFormat(9600), frames)
    fast = line_budget(LineFormat(19200), frames)
    assert slow.cycle_seconds == pytest.approx(2 * fast.cycle_seconds)
    wide = line_budget(LineFormat(19200), frames, gap=0.010)
    assert wide.gap == 0.010
    assert wide.cycle_seconds == pytest.approx(0.1203125 + 12 * 0.010)
    empty = line_budget(LineFormat(19200), [])
    assert empty.max_transactions_per_s == 0.0 and empty.cycle_seconds == 0.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_meter_reports_busy_share_and_rate_against_the_ceiling() -> None:
    clock = FakeClock()
    meter = LineMeter(window=60.0, clock=clock)
    budget = line_budget(LineFormat(19200), junction_frames())
    for _ in range(100):  # 10 s: 10 transactions/s, each holding the line 30 ms
        clock.now += 0.1
        meter.record(0.030, 8, 25)
    report = meter.report(budget, demand_per_s=12.0)
    assert report.window_s == pytest.approx(10.0)
    assert report.utilisation == pytest.approx(0.3)
    assert report.transactions_per_s == pytest.approx(10.0)
    assert report.of_max == pytest.approx(10.0 / budget.max_transactions_per_s)
    assert (report.transactions, report.bytes_sent, report.bytes_received) == (100, 800, 2500)
    text = report.describe(LineFormat(19200))
    assert text.startswith("19200 8E1: busy 30%, 10.0 tx/s of at most 41.6 (24%)")
    assert text.endswith("polls ask 12.0 tx/s")


def test_meter_window_slides_and_stays_bounded() -> None:
    clock = FakeClock()
    meter = LineMeter(window=60.0, clock=clock)
    budget = line_budget(LineFormat(19200), junction_frames())
    for _ in range(6000):  # 10 minutes flat out at 20 tx/s, 45 ms each (90 % busy)...
        clock.now += 0.05
        meter.record(0.045, 8, 9)
    for _ in range(1200):  # ...then 2 minutes at 2 tx/s, 45 ms each (9 % busy)
        clock.now += 0.5
        meter.record(0.045, 8, 9)
    report = meter.report(budget, demand_per_s=2.0)
    assert 60.0 <= report.window_s <= 63.0  # the last minute, to the sample granularity
    assert report.transactions_per_s == pytest.approx(2.0, rel=0.05)
    assert report.utilisation == pytest.approx(0.09, rel=0.05)
    assert report.transactions == 7200
    assert len(meter._samples) <= 22  # samples every window/20 s: bounded however long it runs


def test_meter_before_any_time_has_passed() -> None:
    clock = FakeClock()
    meter = LineMeter(clock=clock)
    report = meter.report(line_budget(LineFormat(19200), junction_frames()), 0.0)
    assert report.utilisation == 0.0 and report.transactions_per_s == 0.0
