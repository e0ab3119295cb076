"""The outbox's state, shared by the jobs that make it up (accepting, draining,
eviction, statistics): the database, the in-memory view of what it holds, and the
one way to run a transaction."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cityedge.gateway.outbox.database import runs
from cityedge.gateway.outbox.ledger import Ledger, Reserve, Tally
from cityedge.gateway.outbox.messages import (
    ALARM,
    CHUNK_BYTES,
    CHUNK_ENTRIES,
    EVENT,
    Entry,
    EventEncoder,
    Sealed,
    Sealer,
)

ALARM_KINDS = ("outbox.disk_full", "outbox.corrupt")


@dataclass(slots=True)
class Counters:
    commits: int = 0
    rows_committed: int = 0
    bytes_committed: int = 0
    evicted: dict[str, int] = field(default_factory=dict)


class OutboxState:
    """Everything the outbox knows, and its transactions; the jobs are its subclasses."""

    def __init__(
        self,
        db: sqlite3.Connection,
        path: Path,
        *,
        seal: Sealer,
        max_bytes: int,
        max_age: float,
        synchronous: str,
        event_encoder: EventEncoder,
        set_aside: Path | None,
        ledger: Ledger,
        reserve: Reserve,
        chunk_entries: int = CHUNK_ENTRIES,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self._db = db
        self._ledger = ledger
        self._reserve = reserve
        self.path = path
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.chunk_entries = chunk_entries
        self.chunk_bytes = chunk_bytes
        self._seal = seal
        self._synchronous = synchronous.upper()
        self._encode_event = event_encoder
        self.set_aside = set_aside
        # Set by the uplink: messages sealed while it is down are marked historical,
        # and while it is up a commit is fsync'ed at once (its messages leave now).
        self.online = False
        self._buffer: list[Entry] = []
        self._acked: dict[int, Sealed] = {}  # acknowledged, deleted at the next commit
        self._inflight: set[int] = set()  # handed to the uplink in this session
        self._cursor: dict[tuple[int, bool], int] = {}  # (priority, backlog) -> last handed out
        self._ahead: dict[tuple[int, bool], deque[Sealed]] = {}  # fetched, not yet handed out
        self._disk_full = False
        # While the disk is full, the store may not grow past this: freed pages are
        # reused, so the file stays as it is and the WAL cycles in the reserve's room.
        self._full_cap: int | None = None
        self._next_age_check = 0.0
        self.counters = Counters()
        # highest seq, bytes and entries stored per priority, in one pass over the table
        self._top: dict[int, int] = {}
        self._held: dict[int, int] = {}  # entries, for the tally (ledger.py)
        self._bytes = 0
        for priority, top, size, entries in db.execute(
            "SELECT priority, MAX(seq), SUM(LENGTH(payload)), SUM(count) FROM messages "
            "GROUP BY priority"
        ):
            self._top[int(priority)] = int(top)
            self._held[int(priority)] = int(entries)
            self._bytes += int(size)
        self._last_seq = max(self._meta("seq"), *self._top.values(), 0)
        self._store_id = self._meta("store")  # 0: a store new to the ledger
        # What an earlier process left may still sit in the page cache only (kill -9):
        # the first message handed out fsyncs it, whatever it is.
        self._durable_seq = -1

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta_seq(self, seq: int) -> None:
        self._set_meta("seq", seq)

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _tally(self) -> None:
        """After a committed transaction: what the store holds now (ledger.py)."""
        low = self._db.execute("SELECT MIN(seq) FROM messages").fetchone()[0]
        held = tuple(max(0, self._held.get(p, 0)) for p in (1, 2, 3))
        self._ledger.record(
            Tally(self._store_id, self._last_seq + 1 if low is None else int(low),
                  self._last_seq, (held[0], held[1], held[2]))
        )  # fmt: skip

    def _forget(self, priority: int, entries: int, size: int) -> None:
        """Messages left the store (acknowledged, evicted, set aside)."""
        self._held[priority] = self._held.get(priority, 0) - entries
        self._bytes -= size

    def _event(self, kind: str, data: dict[str, Any]) -> Entry:
        priority = ALARM if kind in ALARM_KINDS else EVENT
        return Entry("event", priority, time.time(), self._encode_event(kind, data))

    @contextlib.contextmanager
    def _transaction(self, *, fsync: bool = False, tally: bool = True) -> Iterator[None]:
        """One transaction, which also deletes what the broker acknowledged; committed
        with synchronous=FULL when `fsync`. The in-memory view of the acknowledged
        messages follows only once it committed, then the tally (unless the caller
        updates its view first and writes the tally itself)."""
        if fsync:
            self._db.execute("PRAGMA synchronous=FULL")
        try:
            with self._db:
                acked = list(self._acked.values())
                if acked:
                    self._db.executemany(
                        "DELETE FROM messages WHERE seq BETWEEN ? AND ?",
                        runs(sorted(self._acked)),
                    )
                yield
        finally:
            if fsync:
                self._db.execute(f"PRAGMA synchronous={self._synchronous}")
        for message in acked:
            del self._acked[message.seq]
            self._forget(message.priority, message.entry_count, len(message.payload))
        if tally:
            self._tally()

    def _flush_acks(self) -> None:
        if self._acked:
            with self._transaction():
                pass
