"""Sequence bookkeeping as pure arithmetic: the highest number seen and the open holes
of one gateway, advanced by the numbers a transaction stores for the first time.

The stores load a gateway's row and holes under a lock, call `advance`, and write
back the difference, so every worker sees the same answer in any order.
Holes open only above the first number ever stored (what came before the command post
listened is not its business). A range the gateway accounted for (evicted, lost
with a damaged store) is never a hole.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Range = tuple[int, int]  # inclusive


@dataclass(frozen=True, slots=True)
class SeqState:
    high: int | None
    holes: tuple[Range, ...]  # sorted, disjoint
    accounted: tuple[Range, ...] = ()  # sorted, disjoint


@dataclass(frozen=True, slots=True)
class Change:
    state: SeqState
    opened: tuple[Range, ...]  # holes that appeared
    closed: int  # sequence numbers that filled a hole


def merge(ranges: Iterable[Range]) -> tuple[Range, ...]:
    merged: list[Range] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return tuple(merged)


def subtract(ranges: Sequence[Range], cut: Sequence[Range]) -> list[Range]:
    """`ranges` without the numbers in `cut` (both sorted and disjoint)."""
    out: list[Range] = []
    for a, b in ranges:
        start = a
        for c, d in cut:
            if d < start or c > b:
                continue
            if c > start:
                out.append((start, c - 1))
            start = max(start, d + 1)
        if start <= b:
            out.append((start, b))
    return out


def advance(state: SeqState, seqs: Iterable[int], accounted: Iterable[Range] = ()) -> Change:
    """The state after storing `seqs` (each new to the database) and learning `accounted`."""
    known = merge([*state.accounted, *accounted])
    high = state.high
    holes = list(state.holes)
    opened: list[Range] = []
    closed = 0
    for seq in sorted(set(seqs)):
        if high is None:
            high = seq
        elif seq > high:
            if seq > high + 1:
                opened += subtract([(high + 1, seq - 1)], known)
            high = seq
        else:
            before = len_of(holes)
            holes = subtract(holes, [(seq, seq)])
            closed += before - len_of(holes)
    holes = subtract(merge([*holes, *opened]), known)
    return Change(SeqState(high, tuple(holes), known), tuple(opened), closed)


def stored_change(before: SeqState, after: SeqState) -> tuple[list[int], list[Range]]:
    """What a store rewrites in its holes table: the first seq of each hole row to delete,
    and the rows to insert (a hole that shrank is one of each)."""
    old, new = set(before.holes), set(after.holes)
    return sorted(first for first, _ in old - new), sorted(new - old)


def len_of(ranges: Iterable[Range]) -> int:
    return sum(b - a + 1 for a, b in ranges)
