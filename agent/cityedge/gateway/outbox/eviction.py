"""Keeping the outbox within its bounds: age (`max_age`), size (`max_bytes`), a full
disk, and the memory buffer while the disk refuses writes. Lowest priority and
oldest first; every eviction is recorded as an `outbox.evicted` event."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import structlog

from cityedge.gateway.outbox.messages import CLOCK_FLOOR, MAX_BUFFERED, PRIORITIES_LOW_FIRST
from cityedge.gateway.outbox.state import OutboxState
from cityedge.sdk.model import PRIORITY_NAMES

log = structlog.get_logger(__name__)


class Eviction(OutboxState):
    """What the outbox gives up, and the record it keeps of it."""

    def _enforce_bounds(self) -> None:
        now = time.monotonic()
        if now >= self._next_age_check:
            # Messages are stored in time order, so the oldest per priority (by seq, on
            # the index) tells whether anything is too old: no table scan per commit.
            self._next_age_check = now + min(60.0, self.max_age / 10)
            self._evict_older_than(time.time() - self.max_age)
        bound, reason = self.max_bytes, "max-bytes"
        if self._full_cap is not None and self._full_cap < bound:
            bound, reason = self._full_cap, "disk-full"
        if self._bytes > bound:
            # Go below the bound by a margin so that eviction is not run on every commit.
            self._evict_bytes(self._bytes - int(bound * 0.9), reason=reason)

    def _evict_older_than(self, horizon: float) -> None:
        # A message goes when its newest entry is too old. An entry stamped before
        # CLOCK_FLOOR was taken before the clock was set (cold boot without RTC): its
        # age is unknown, so age alone stops there instead of dropping a whole offline
        # boot the moment NTP steps the clock; max_bytes still bounds it.
        for priority in PRIORITIES_LOW_FIRST:
            self._evict_oldest(
                priority,
                lambda first, last, _size: last >= horizon or first < CLOCK_FLOOR,
                reason="max-age",
            )

    def _evict_bytes(self, need: int, *, reason: str) -> bool:
        """Delete the oldest messages of the lowest priority first until `need` bytes
        are free."""
        freed = 0
        for priority in PRIORITIES_LOW_FIRST:
            if freed >= need:
                break
            still_needed = need - freed

            def enough(
                _first: float, _last: float, size: int, still_needed: int = still_needed
            ) -> bool:
                return size >= still_needed

            freed += self._evict_oldest(priority, enough, reason=reason, inclusive=True)
        if freed:
            with contextlib.suppress(sqlite3.OperationalError):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return freed > 0

    def _evict_oldest(
        self,
        priority: int,
        enough: Callable[[float, float, int], bool],
        *,
        reason: str,
        inclusive: bool = False,
    ) -> int:
        """Delete messages of `priority` oldest first until `enough(first_ts, last_ts,
        bytes so far)`; the message that satisfies it is deleted too when `inclusive`.
        Messages on their way to the broker are left alone. Returns bytes freed."""
        victims: list[int] = []
        count, size = 0, 0
        first_ts = last_ts = None
        for seq, first, last, n, length in self._db.execute(
            "SELECT seq, first_ts, last_ts, count, LENGTH(payload) FROM messages "
            "WHERE priority = ? ORDER BY seq",
            (priority,),
        ):
            if seq in self._inflight or seq in self._acked:
                continue
            if not inclusive and enough(first, last, size):
                break
            victims.append(seq)
            count, size = count + n, size + length
            first_ts = first if first_ts is None else min(first_ts, first)
            last_ts = last if last_ts is None else max(last_ts, last)
            if inclusive and enough(first, last, size):
                break
        if not victims:
            return 0
        with self._transaction(tally=False):
            self._db.executemany("DELETE FROM messages WHERE seq = ?", [(s,) for s in victims])
        self._forget(priority, count, size)
        self._tally()
        self._ahead.clear()  # fetched messages may be among the victims: fetch again
        self._record_eviction(
            reason, {priority: count}, first_ts, last_ts, size, seqs=(victims[0], victims[-1])
        )
        return size

    def _shed_buffer(self) -> None:
        """Memory bound while the disk refuses writes: drop the oldest lowest-priority entries."""
        excess = len(self._buffer) - MAX_BUFFERED
        for priority in PRIORITIES_LOW_FIRST:
            if excess <= 0:
                break
            victims = [i for i, e in enumerate(self._buffer) if e.priority == priority][:excess]
            if not victims:
                continue
            dropped = [self._buffer[i] for i in victims]
            keep = set(victims)
            self._buffer = [e for i, e in enumerate(self._buffer) if i not in keep]
            excess -= len(victims)
            self._record_eviction(
                "buffer-full",
                {priority: len(dropped)},
                min(e.ts for e in dropped),
                max(e.ts for e in dropped),
                sum(len(e.body) for e in dropped),
                seqs=None,  # never sealed: no sequence number was spent
            )

    def _record_eviction(
        self,
        reason: str,
        counts: dict[int, int],
        first_ts: float | None,
        last_ts: float | None,
        size: int,
        *,
        seqs: tuple[int, int] | None,
    ) -> None:
        by_name = {PRIORITY_NAMES.get(p, str(p)): n for p, n in counts.items()}
        for name, n in by_name.items():
            self.counters.evicted[name] = self.counters.evicted.get(name, 0) + n
        data: dict[str, Any] = {
            "reason": reason,
            "counts": by_name,
            "first_ts": first_ts,
            "last_ts": last_ts,
            "bytes": size,
        }
        if seqs is not None:
            # the command post can tell this gap from a loss: these numbers will not come
            data["first_seq"], data["last_seq"] = seqs
        log.warning("outbox.evicted", **data)
        self._buffer.append(self._event("outbox.evicted", data))
