"""The command post's side of an explicit gap: numbers a gateway said will never
arrive are accounted for, not missing, and not mistaken for duplicates."""

from __future__ import annotations

from cityedge.central.sequence import SeqStatus, SequenceTracker


def test_an_accounted_range_is_not_missing_and_what_arrives_in_it_is_late() -> None:
    tracker = SequenceTracker()
    for seq in range(1, 6):
        tracker.observe(seq)
    tracker.account(6, 1024)  # the alarm of a lost store names these
    seen = tracker.observe(1025)
    assert seen.status is SeqStatus.NEW and seen.opened is None  # explained, not a hole
    assert tracker.missing() == []
    assert tracker.observe(7).status is SeqStatus.LATE  # sent before the loss: still taken
    assert tracker.observe(7).status is SeqStatus.DUPLICATE


def test_only_the_unexplained_part_of_a_hole_is_missing() -> None:
    tracker = SequenceTracker()
    tracker.observe(1)
    tracker.account(3, 5)
    assert tracker.observe(10).opened == (2, 9)
    assert tracker.missing() == [(2, 2), (6, 9)]
    tracker.account(6, 9)
    assert tracker.missing() == [(2, 2)]
    assert tracker.accounted() == [(3, 9)]


def test_accounted_ranges_are_bounded_and_age_out_with_the_window() -> None:
    tracker = SequenceTracker(window=100, max_runs=4)
    tracker.observe(1)
    for k in range(10):
        tracker.account(10 * k + 2, 10 * k + 3)
    assert len(tracker.accounted()) == 4
    tracker.observe(1000)
    assert tracker.accounted() == []
