"""Per-gateway sequence numbers as the command post sees them: new, late, duplicate, gaps.

A gateway numbers its messages with a sequence that never goes back. What
arrives can still be out of order (64 messages in flight), repeated (a message
resent after a crash, or a QoS 1 redelivery) or missing (not delivered yet).
The tracker keeps the runs of sequence numbers seen, so its memory grows with
the number of holes, not with traffic, and both are bounded.

A gateway also says which numbers will never come: evicted messages, a store
lost to damage (`outbox.evicted`, `outbox.corrupt`: `first_seq`..`last_seq`).
Those ranges are *accounted for*: a hole inside them is explained, not missing;
a number in them that does arrive after all (it was sent before the loss) is
still accepted, as late, since being accounted for is not being seen.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from enum import StrEnum


class SeqStatus(StrEnum):
    NEW = "new"  # above everything seen so far
    LATE = "late"  # below the highest seen, never seen before: a hole filled
    DUPLICATE = "duplicate"  # seen before: drop it
    STALE = "stale"  # below the window: too old to tell apart from a duplicate; dropped


@dataclass(frozen=True, slots=True)
class Observation:
    status: SeqStatus
    opened: tuple[int, int] | None = None  # a hole [first, last] this number revealed


class SequenceTracker:
    """Runs of seen sequence numbers within a window below the highest one.

    Holes are reported only above the first number seen: what came before the
    command post started listening is not its business. A hole that falls
    below the window, or beyond `max_runs` holes, is given up (`forgotten`).
    """

    def __init__(self, *, window: int = 1_000_000, max_runs: int = 1024) -> None:
        if window < 1 or max_runs < 2:
            raise ValueError("window must be >= 1 and max_runs >= 2")
        self.window = window
        self.max_runs = max_runs
        self._starts: list[int] = []
        self._ends: list[int] = []
        self.origin: int | None = None
        self._forced_floor = 0
        self.forgotten = 0  # sequence numbers given up as missing
        self._accounted: list[tuple[int, int]] = []  # sorted, disjoint ranges

    @property
    def high(self) -> int | None:
        return self._ends[-1] if self._ends else None

    @property
    def floor(self) -> int:
        high = self.high
        return max(self._forced_floor, 0 if high is None else high - self.window + 1)

    def observe(self, seq: int) -> Observation:
        if not self._starts:
            self._starts.append(seq)
            self._ends.append(seq)
            self.origin = seq
            return Observation(SeqStatus.NEW)
        if seq < self.floor:
            return Observation(SeqStatus.STALE)
        i = bisect_right(self._starts, seq) - 1
        if i >= 0 and seq <= self._ends[i]:
            return Observation(SeqStatus.DUPLICATE)
        high = self._ends[-1]
        status = SeqStatus.NEW if seq > high else SeqStatus.LATE
        opened = None
        if seq > high + 1:
            opened = self._unexplained(max(high + 1, seq - self.window + 1), seq - 1)
        self._insert(i, seq)
        self._trim()
        return Observation(status, opened)

    def _insert(self, i: int, seq: int) -> None:
        starts, ends = self._starts, self._ends
        joins_left = i >= 0 and ends[i] == seq - 1
        joins_right = i + 1 < len(starts) and starts[i + 1] == seq + 1
        if joins_left and joins_right:
            ends[i] = ends[i + 1]
            del starts[i + 1], ends[i + 1]
        elif joins_left:
            ends[i] = seq
        elif joins_right:
            starts[i + 1] = seq
        else:
            starts.insert(i + 1, seq)
            ends.insert(i + 1, seq)

    def _trim(self) -> None:
        starts, ends = self._starts, self._ends
        if len(starts) > self.max_runs:
            # too many holes: give up the oldest ones by raising the floor
            self._forced_floor = starts[len(starts) - self.max_runs + 1]
        floor = self.floor
        k = bisect_left(ends, floor)  # runs 0..k-1 lie wholly below the floor
        if k == 0:
            return
        bottom = self.origin if self.origin is not None else 0
        for j in range(k):
            first, last = max(ends[j] + 1, bottom), min(starts[j + 1] - 1, floor - 1)
            self.forgotten += sum(b - a + 1 for a, b in self._subtract(first, last))
        del starts[:k], ends[:k]
        self._accounted = [(a, b) for a, b in self._accounted if b >= floor]
        if starts[0] >= floor:
            # one run stands for "everything below the floor", so the hole above it remains
            if starts[0] == floor:
                starts[0] = floor - 1
            else:
                starts.insert(0, floor - 1)
                ends.insert(0, floor - 1)

    def missing(self) -> list[tuple[int, int]]:
        """The current holes not accounted for, lowest first, as inclusive ranges."""
        bottom = max(self.floor, self.origin or 0)
        holes = []
        for end, start in zip(self._ends, self._starts[1:], strict=False):
            holes += self._subtract(max(end + 1, bottom), start - 1)
        return holes

    def account(self, first: int, last: int) -> None:
        """The gateway says [first, last] will never arrive (see the module docstring)."""
        if last < first or last < self.floor:
            return
        merged: list[tuple[int, int]] = []
        for a, b in sorted([*self._accounted, (first, last)]):
            if merged and a <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        self._accounted = merged[-self.max_runs :]  # bounded like the holes

    def accounted(self) -> list[tuple[int, int]]:
        return list(self._accounted)

    def _subtract(self, first: int, last: int) -> list[tuple[int, int]]:
        """[first, last] without the accounted ranges."""
        parts = []
        for a, b in self._accounted:
            if b < first or a > last:
                continue
            if a > first:
                parts.append((first, a - 1))
            first = b + 1
        if first <= last:
            parts.append((first, last))
        return parts

    def _unexplained(self, first: int, last: int) -> tuple[int, int] | None:
        """The span of what is not accounted for in a hole just opened."""
        parts = self._subtract(first, last)
        return (parts[0][0], parts[-1][1]) if parts else None
