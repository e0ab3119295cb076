"""The hole arithmetic against a brute-force model: whatever the order and batching
of arrivals, the open holes are exactly the numbers between the first batch's lowest
and the highest seen that were neither seen nor accounted for."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.central.ingest.holes import SeqState, advance, len_of, merge, subtract


def _numbers(ranges: tuple[tuple[int, int], ...]) -> set[int]:
    return {n for a, b in ranges for n in range(a, b + 1)}


batches = st.lists(st.lists(st.integers(1, 200), min_size=1, max_size=20), min_size=1,
                   max_size=12)  # fmt: skip
told = st.lists(st.tuples(st.integers(1, 200), st.integers(0, 30)), max_size=3)


@settings(max_examples=300, deadline=None)
@given(batches, told)
def test_holes_match_the_model(arrivals: list[list[int]], accounted: list[tuple[int, int]]) -> None:
    state = SeqState(None, ())
    seen: set[int] = set()
    closed = 0
    ranges = [(a, a + n) for a, n in accounted]
    for i, batch in enumerate(arrivals):
        new = set(batch) - seen  # the store passes only numbers new to the database
        change = advance(state, new, ranges if i == len(arrivals) // 2 else ())
        closed += change.closed
        state = change.state
        seen |= new
    origin = min(arrivals[0])
    known = _numbers(state.accounted)
    expected = set(range(origin, max(seen) + 1)) - seen - known
    assert _numbers(state.holes) == expected
    assert state.high == max(seen)
    assert list(state.holes) == sorted(state.holes)
    assert all(b + 1 < c for (_, b), (c, _) in zip(state.holes, state.holes[1:], strict=False))
    assert closed >= 0


def test_a_late_message_splits_its_hole_and_the_last_one_closes_it() -> None:
    first = advance(SeqState(None, ()), [1, 2, 6])
    assert first.state.holes == ((3, 5),) and first.opened == ((3, 5),)
    middle = advance(first.state, [4])
    assert middle.state.holes == ((3, 3), (5, 5)) and middle.closed == 1
    done = advance(middle.state, [3, 5])
    assert done.state.holes == () and done.closed == 2 and done.state.high == 6


def test_an_accounted_range_is_never_a_hole() -> None:
    state = advance(SeqState(None, ()), [1, 10]).state
    assert state.holes == ((2, 9),)
    after = advance(state, [], [(3, 8)]).state
    assert after.holes == ((2, 2), (9, 9))
    assert advance(after, [20], [(11, 19)]).state.holes == ((2, 2), (9, 9))


def test_range_helpers() -> None:
    assert merge([(5, 6), (1, 2), (3, 3)]) == ((1, 3), (5, 6))
    assert subtract([(1, 10)], [(3, 4), (8, 20)]) == [(1, 2), (5, 7)]
    assert len_of([(1, 3), (7, 7)]) == 4
