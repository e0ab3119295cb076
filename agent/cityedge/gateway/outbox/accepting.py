"""Accepting entries: buffered in memory, then sealed into signed messages and
written in one transaction per window; the commit is the moment a reading is
accepted. A full disk evicts telemetry and retries; a store of an earlier layout
is sealed once, at opening."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence

import structlog

from cityedge.gateway.outbox.database import is_full
from cityedge.gateway.outbox.eviction import Eviction
from cityedge.gateway.outbox.messages import MAX_BUFFERED, Entry, Group, Row, chunk

log = structlog.get_logger(__name__)


class Accepting(Eviction):
    """add() and commit(); eviction is its parent: a commit enforces the bounds."""

    def add(self, entries: Sequence[Entry]) -> None:
        self._buffer.extend(entries)
        if len(self._buffer) > MAX_BUFFERED:
            self._shed_buffer()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def commit(self) -> int:
        """Seal and write everything buffered in one transaction; returns entries
        committed."""
        if not self._buffer:
            self._flush_acks()
            return 0
        rows = self._buffer
        try:
            committed = self._insert(rows)
        except sqlite3.OperationalError as exc:
            if not is_full(exc):
                raise
            committed = self._commit_on_full_disk(rows)
            if committed == 0:
                return 0
        else:
            if self._disk_full:
                self._disk_full = False
                log.warning("outbox.disk_full.cleared", path=str(self.path))
                self._buffer = [self._event("outbox.disk_full", {"active": False})]
                self._insert(self._buffer)
        self._buffer = []
        self._enforce_bounds()
        return committed

    def _insert(self, entries: list[Entry]) -> int:
        rows = self._sealed_rows(self._chunks(entries), historical=not self.online)
        durable = self.online  # these leave at once: their numbers must be on disk first
        with self._transaction(fsync=durable):
            self._write(rows)
        size = self._remember(rows)  # the transaction stands: the in-memory view follows
        if durable:
            self._durable_seq = self._last_seq
        self.counters.commits += 1
        self.counters.rows_committed += len(entries)
        self.counters.bytes_committed += size
        return len(entries)

    def _sealed_rows(self, groups: Iterable[Group], *, historical: bool) -> list[Row]:
        """Each group sealed as the next message, numbered after the last one stored."""
        rows = []
        for seq, (kind, priority, first_ts, last_ts, count, body) in enumerate(
            groups, start=self._last_seq + 1
        ):
            payload = self._seal(
                kind=kind, seq=seq, historical=historical, entries=body, count=count
            )
            rows.append((seq, kind, priority, payload, count, first_ts, last_ts, historical))
        return rows

    def _write(self, rows: Sequence[Row]) -> None:
        """Inside the caller's transaction."""
        self._db.executemany(
            "INSERT INTO messages (seq, kind, priority, payload, count, first_ts, last_ts, "
            "historical) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        if rows:
            self._set_meta_seq(rows[-1][0])

    def _remember(self, rows: Sequence[Row]) -> int:
        """After the transaction that wrote `rows` committed; returns their bytes."""
        for row in rows:
            self._top[row[2]] = row[0]
        if rows:
            self._last_seq = rows[-1][0]
        size = sum(len(row[3]) for row in rows)
        self._bytes += size
        return size

    def _commit_on_full_disk(self, rows: list[Entry]) -> int:
        """The filesystem (or page budget) is full: evict telemetry by policy and retry."""
        if not self._disk_full:
            self._disk_full = True
            log.error("outbox.disk_full", path=str(self.path), buffered=len(rows))
            rows.append(self._event("outbox.disk_full", {"active": True}))
        for share in (0.1, 0.3, 0.6):
            need = max(int(self._bytes * share), sum(len(e.body) for e in rows))
            if not self._evict_bytes(need, reason="disk-full"):
                break
            try:
                return self._insert(rows)
            except sqlite3.OperationalError as exc:
                if not is_full(exc):
                    raise
        self._buffer = rows  # kept in memory (bounded by MAX_BUFFERED) until space returns
        return 0

    def _seal_older_store(self) -> None:
        """A store in an earlier layout keeps entries unsealed: one row per entry in
        `rows` (the first layout) or concatenated in `chunks` (the second). Seal them,
        in order, as historical messages, in one transaction (entries not re-encoded)."""
        tables = {
            name
            for (name,) in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('rows', 'chunks')"
            )
        }
        if not tables:
            return
        groups: list[Group] = []
        if "rows" in tables:
            groups += self._chunks(
                [
                    Entry(kind, priority, ts, body)
                    for kind, priority, ts, body in self._db.execute(
                        "SELECT kind, priority, ts, body FROM rows ORDER BY id"
                    )
                ]
            )
        if "chunks" in tables:
            groups += self._db.execute(
                "SELECT kind, priority, first_ts, last_ts, count, body FROM chunks ORDER BY id"
            ).fetchall()
        rows = self._sealed_rows(groups, historical=True)
        with self._db:
            self._write(rows)
            for name in tables:
                self._db.execute(f"DROP TABLE {name}")
        self._remember(rows)
        log.info("outbox.migrated", entries=sum(g[4] for g in groups), messages=len(groups))

    def _chunks(self, entries: list[Entry]) -> Iterator[Group]:
        return chunk(entries, self.chunk_entries, self.chunk_bytes)
