"""Accepting entries: buffered in memory, then sealed into signed messages and
written in one transaction per window; the commit is the moment a reading is
accepted. A full disk releases the space held in reserve, evicts telemetry and
retries, and never stops the caller; a store of an earlier layout is sealed once,
at opening."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence

import structlog

from cityedge.gateway.outbox.database import digest, is_full
from cityedge.gateway.outbox.eviction import Eviction
from cityedge.gateway.outbox.ledger import MarkUnwritable, is_full_errno
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
        committed. A full disk is handled here, never raised: the caller goes on."""
        if not self._buffer:
            with self._unless_full():
                self._flush_acks()
            self._check_space()
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
        self._buffer = []
        with self._unless_full():
            self._enforce_bounds()
        self._check_space()
        return committed

    def _check_space(self) -> None:
        """The disk-full condition holds until the reserve could be taken back."""
        if self._disk_full and self._reserve.ensure():
            self._disk_full, self._full_cap = False, None
            log.warning("outbox.disk_full.cleared", path=str(self.path))
            self._buffer.append(self._event("outbox.disk_full", {"active": False}))

    @contextlib.contextmanager
    def _unless_full(self) -> Iterator[None]:
        """Deletes (acknowledged, evicted) need room too; on a full disk they wait for
        the next commit instead of failing it."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if not is_full(exc):
                raise
            log.warning("outbox.disk_full.deferred", path=str(self.path), error=str(exc))

    def _insert(self, entries: list[Entry]) -> int:
        rows = self._sealed_rows(self._chunks(entries), historical=not self.online)
        self._reserve_numbers(rows)
        durable = self.online  # these leave at once: their numbers must be on disk first
        with self._transaction(fsync=durable, tally=False):
            self._write(rows)
        size = self._remember(rows)  # the transaction stands: the in-memory view follows
        self._tally()
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

    def _reserve_numbers(self, rows: Sequence[Row]) -> None:
        """The high-water mark (ledger.py) goes ahead of every number sealed; a mark
        that cannot be written on a full disk is a full disk."""
        if not rows:
            return
        try:
            self._ledger.reserve(rows[-1][0], self._store_id)
        except MarkUnwritable as exc:
            if is_full_errno(exc):
                raise sqlite3.OperationalError(f"database or disk is full: {exc}") from exc
            raise

    def _write(self, rows: Sequence[Row]) -> None:
        """Inside the caller's transaction."""
        self._db.executemany(
            "INSERT INTO messages (seq, kind, priority, payload, count, first_ts, last_ts, "
            "historical, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(*row, digest(row[3])) for row in rows],
        )
        if rows:
            self._set_meta_seq(rows[-1][0])

    def _remember(self, rows: Sequence[Row]) -> int:
        """After the transaction that wrote `rows` committed; returns their bytes."""
        for row in rows:
            self._top[row[2]] = row[0]
            self._held[row[2]] = self._held.get(row[2], 0) + row[4]
        if rows:
            self._last_seq = rows[-1][0]
        size = sum(len(row[3]) for row in rows)
        self._bytes += size
        return size

    def _commit_on_full_disk(self, rows: list[Entry]) -> int:
        """The filesystem (or page budget) is full: give back the reserve, so that the
        deletes have room, evict telemetry by policy and retry; the alarm and the
        eviction events go in the same transaction as the entries."""
        if not self._disk_full:
            self._disk_full = True
            log.error("outbox.disk_full", path=str(self.path), buffered=len(rows))
            rows.append(self._event("outbox.disk_full", {"active": True}))
        # The reserve given back first: the WAL goes into the main file (which takes
        # as much room as it holds) and is truncated, then the eviction's DELETE has
        # room. With the reserve just spent, evict at once, so that there is room for
        # the next time; without it, the checkpoint alone may be enough.
        released = self._reserve.release()
        cap = int(self._bytes * 0.9)
        self._full_cap = cap if self._full_cap is None else min(self._full_cap, cap)
        with contextlib.suppress(sqlite3.OperationalError):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for share in (0.1, 0.3, 0.6) if released else (0.0, 0.1, 0.3, 0.6):
            try:
                # an eviction's outbox.evicted event joins `rows` (the buffer itself)
                if share and not self._evict_bytes(
                    max(int(self._bytes * share), sum(len(e.body) for e in rows)),
                    reason="disk-full",
                ):
                    break
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
        self._reserve_numbers(rows)
        with self._transaction(tally=False):
            self._write(rows)
            for name in tables:
                self._db.execute(f"DROP TABLE {name}")
        self._remember(rows)
        self._tally()
        log.info("outbox.migrated", entries=sum(g[4] for g in groups), messages=len(groups))

    def _chunks(self, entries: list[Entry]) -> Iterator[Group]:
        return chunk(entries, self.chunk_entries, self.chunk_bytes)
