"""The embedded store: one SQLite file, WAL, the same tables and semantics as PostgreSQL.

Writers serialise on `BEGIN IMMEDIATE` (the whole file is the lock), so several
ingest processes on one machine still agree — a key claim too: it inserts unless
bound and reads back in one such transaction. Times are epoch seconds (REAL); a
rejected row's id is its rowid.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TypeVar

from cityedge.central.ingest.decode import Decoded, Rejected
from cityedge.central.ingest.holes import SeqState, advance, stored_change
from cityedge.central.ingest.rows import (
    EVENT_COLUMNS,
    READING_COLUMNS,
    RESULT_COLUMNS,
    event_rows,
    reading_rows,
    result_rows,
    to_json,
)
from cityedge.central.ingest.store.base import (
    Binding,
    Hole,
    Kept,
    RejectedCount,
    Retire,
    StoreError,
    Totals,
    WriteReport,
    by_gateway,
    claimed,
    latest_states,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS gateways (
    gateway TEXT PRIMARY KEY, site TEXT NOT NULL, high INTEGER,
    state_ts REAL, state TEXT, key_id TEXT);
CREATE TABLE IF NOT EXISTS messages (
    gateway TEXT NOT NULL, seq INTEGER NOT NULL, site TEXT NOT NULL, kind TEXT NOT NULL,
    ts REAL NOT NULL, historical INTEGER NOT NULL, entries INTEGER NOT NULL,
    stored REAL NOT NULL, PRIMARY KEY (gateway, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS holes (
    gateway TEXT NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL,
    opened REAL NOT NULL, PRIMARY KEY (gateway, first));
CREATE TABLE IF NOT EXISTS accounted (
    gateway TEXT NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL,
    PRIMARY KEY (gateway, first));
CREATE TABLE IF NOT EXISTS readings (
    ts REAL NOT NULL, site TEXT NOT NULL, gateway TEXT NOT NULL, seq INTEGER NOT NULL,
    device TEXT NOT NULL, point TEXT NOT NULL, num REAL, txt TEXT, unit TEXT,
    quality TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS readings_by_point ON readings (site, device, point, ts);
CREATE TABLE IF NOT EXISTS events (
    ts REAL NOT NULL, site TEXT NOT NULL, gateway TEXT NOT NULL, seq INTEGER NOT NULL,
    kind TEXT NOT NULL, source TEXT NOT NULL, severity TEXT NOT NULL, active INTEGER,
    data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_site ON events (site, ts);
CREATE TABLE IF NOT EXISTS results (
    ts REAL NOT NULL, site TEXT NOT NULL, gateway TEXT NOT NULL, seq INTEGER NOT NULL,
    command_id TEXT NOT NULL, code TEXT NOT NULL, detail TEXT NOT NULL, readback TEXT,
    readback_matched INTEGER, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rejected (
    received REAL NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL,
    payload BLOB);
CREATE TABLE IF NOT EXISTS key_bindings (
    key_id TEXT PRIMARY KEY, gateway TEXT NOT NULL, public_key BLOB, vouched_by TEXT,
    bound REAL NOT NULL);
"""
# A file made before replays, or before keys could be retired, gets the columns once:
# (table, column, the statement that adds it).
ADDED_COLUMNS = (
    ("rejected", "replayed", "ALTER TABLE rejected ADD COLUMN replayed REAL"),
    ("key_bindings", "retired", "ALTER TABLE key_bindings ADD COLUMN retired REAL"),
    ("key_bindings", "retired_reason", "ALTER TABLE key_bindings ADD COLUMN retired_reason TEXT"),
)
# What a worker asks before every batch counts this index's rows only.
RETIRED_INDEX = ("CREATE INDEX IF NOT EXISTS key_bindings_retired ON key_bindings (key_id) "
                 "WHERE retired IS NOT NULL")  # fmt: skip
BINDING_COLUMNS = "key_id, gateway, public_key, vouched_by, bound, retired, retired_reason"
T = TypeVar("T")


def _insert(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


class SqliteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()  # one statement sequence at a time on the connection

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        try:
            db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None,
                                 check_same_thread=False)  # fmt: skip
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # committed means on disk: then we ack
            db.executescript(SCHEMA)
            db.execute("BEGIN IMMEDIATE")  # two processes opening an old file add each once
            for table, column, add in ADDED_COLUMNS:
                if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
                    db.execute(add)
            db.execute(RETIRED_INDEX)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite {self.path}: {exc}") from None
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"sqlite {self.path}: not open")
        return self._db

    async def write(self, messages: Sequence[Decoded], rejected: Sequence[Rejected],
                    replayed: Sequence[int] = ()) -> WriteReport:  # fmt: skip
        def write(db: sqlite3.Connection) -> WriteReport:
            report = self._transaction(db, messages, rejected)
            db.executemany("UPDATE rejected SET replayed = ? WHERE rowid = ?",
                           [(time.time(), i) for i in replayed])  # fmt: skip
            return report

        return await self._in_transaction(write)

    async def _in_transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            db = self.db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = work(db)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"sqlite {self.path}: {exc}") from None
            return result

        async with self._lock:
            return await asyncio.to_thread(run)

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            try:
                return query(self.db)
            except sqlite3.Error as exc:
                raise StoreError(f"sqlite {self.path}: {exc}") from None

        async with self._lock:
            return await asyncio.to_thread(run)

    async def bindings(self, key_ids: Collection[str]) -> dict[str, Binding]:
        wanted = list(key_ids)
        return await self._read(lambda db: _bindings(db, wanted)) if wanted else {}

    async def claim(self, claims: Sequence[Binding]) -> dict[str, Binding]:
        kids = [c.key_id for c in claims]

        def claim(db: sqlite3.Connection) -> dict[str, Binding]:
            db.executemany(
                "INSERT INTO key_bindings (key_id, gateway, public_key, vouched_by, bound) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (key_id) DO UPDATE "
                "SET public_key = excluded.public_key, vouched_by = excluded.vouched_by "
                "WHERE key_bindings.gateway = excluded.gateway "
                "AND excluded.public_key IS NOT NULL AND key_bindings.public_key IS NULL",
                [(c.key_id, c.gateway, c.public_key, c.vouched_by, time.time()) for c in claims],
            )
            held = _bindings(db, kids)
            if not claimed(held, claims):
                raise _Lost  # all or none: roll back what was inserted
            return held

        if not claims:
            return {}
        try:
            return await self._in_transaction(claim)
        except _Lost:
            return await self._read(lambda db: _bindings(db, kids))

    async def keys(self) -> list[Binding]:
        rows = await self._read(lambda db: db.execute(
            f"SELECT {BINDING_COLUMNS} FROM key_bindings ORDER BY gateway, bound, key_id",
        ).fetchall())  # fmt: skip
        return [_binding(*row) for row in rows]

    async def retire(self, key_id: str, reason: str | None,
                     force: bool) -> tuple[Retire, Binding | None]:  # fmt: skip
        def retire(db: sqlite3.Connection) -> tuple[Retire, Binding | None]:
            held = _bindings(db, [key_id]).get(key_id)
            if held is None or held.retired is not None:
                return (Retire.UNKNOWN if held is None else Retire.ALREADY), held
            (others,) = db.execute(
                "SELECT count(*) FROM key_bindings WHERE gateway = ? AND key_id != ? "
                "AND retired IS NULL", (held.gateway, key_id)).fetchone()  # fmt: skip
            if not others and not force:
                return Retire.LAST, held
            db.execute("UPDATE key_bindings SET retired = ?, retired_reason = ? WHERE key_id = ?",
                       (time.time(), reason, key_id))  # fmt: skip
            return Retire.RETIRED, _bindings(db, [key_id])[key_id]

        return await self._in_transaction(retire)  # BEGIN IMMEDIATE: one retirement at a time

    async def retirements(self, known: int) -> tuple[int, list[Binding]]:
        def read(db: sqlite3.Connection) -> tuple[int, list[Binding]]:
            (count,) = db.execute(
                "SELECT count(*) FROM key_bindings WHERE retired IS NOT NULL"
            ).fetchone()
            if count == known:
                return count, []
            rows = db.execute(f"SELECT {BINDING_COLUMNS} FROM key_bindings "
                              "WHERE retired IS NOT NULL").fetchall()  # fmt: skip
            return len(rows), [_binding(*row) for row in rows]

        return await self._read(read)

    async def kept(self, after: int, limit: int) -> list[Kept]:
        rows = await self._read(lambda db: db.execute(
            "SELECT rowid, topic, reason, payload FROM rejected WHERE rowid > ? AND "
            "payload IS NOT NULL AND replayed IS NULL ORDER BY rowid LIMIT ?", (after, limit),
        ).fetchall())  # fmt: skip
        return [Kept(i, topic, reason, bytes(payload)) for i, topic, reason, payload in rows]

    async def rejections(self) -> list[RejectedCount]:
        rows = await self._read(lambda db: db.execute(
            "SELECT reason, topic, sum(replayed IS NULL), "
            "sum(replayed IS NULL AND payload IS NOT NULL), sum(replayed IS NOT NULL) "
            "FROM rejected GROUP BY reason, topic ORDER BY reason, topic").fetchall())  # fmt: skip
        return [RejectedCount(*row) for row in rows]

    def _transaction(self, db: sqlite3.Connection, messages: Sequence[Decoded],
                     rejected: Sequence[Rejected]) -> WriteReport:  # fmt: skip
        now = time.time()
        report = WriteReport(rejected=len(rejected))
        fresh: list[Decoded] = []
        for gateway, group in by_gateway(messages).items():
            db.execute("INSERT OR IGNORE INTO gateways (gateway, site) VALUES (?, ?)",
                       (gateway, group[0].site))  # fmt: skip
            new = [m for m in group if db.execute(
                "INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (m.gateway, m.seq, m.site, m.kind, m.ts, m.historical,
                 len(m.readings) + len(m.events) + len(m.results), now),
            ).rowcount == 1]  # fmt: skip
            fresh += new
            accounted = [r for m in new for r in m.accounted]
            if new or accounted:
                self._advance(db, gateway, [m.seq for m in new], accounted, report, now)
        report.duplicates = sum(m.sequenced for m in messages) - len(fresh)
        report.messages = len(fresh)
        for table, columns, rows in (
            ("readings", READING_COLUMNS, reading_rows(fresh)),
            ("events", EVENT_COLUMNS, event_rows(fresh)),
            ("results", RESULT_COLUMNS, result_rows(fresh)),
        ):
            if rows:
                db.executemany(_insert(table, columns), rows)
            setattr(report, table, len(rows))
        for m in latest_states(messages):
            db.execute(
                "INSERT INTO gateways (gateway, site, state_ts, state, key_id) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (gateway) DO UPDATE SET "
                "site = excluded.site, state_ts = excluded.state_ts, state = excluded.state, "
                "key_id = excluded.key_id WHERE gateways.state_ts IS NULL "
                "OR gateways.state_ts <= excluded.state_ts",
                (m.gateway, m.site, m.ts, to_json(m.state), m.key_id),
            )
            report.states += 1
        if rejected:
            db.executemany(
                "INSERT INTO rejected (received, topic, reason, detail, payload) "
                "VALUES (?, ?, ?, ?, ?)",
                [(now, r.topic, r.reason, r.detail[:500], r.payload) for r in rejected],
            )
        return report

    def _advance(
        self,
        db: sqlite3.Connection,
        gateway: str,
        seqs: list[int],
        accounted: list[tuple[int, int]],
        report: WriteReport,
        now: float,
    ) -> None:
        (high,) = db.execute("SELECT high FROM gateways WHERE gateway = ?", (gateway,)).fetchone()
        holes = db.execute("SELECT first, last FROM holes WHERE gateway = ? ORDER BY first",
                           (gateway,)).fetchall()  # fmt: skip
        known = db.execute("SELECT first, last FROM accounted WHERE gateway = ? ORDER BY first",
                           (gateway,)).fetchall()  # fmt: skip
        before = SeqState(high, tuple(map(tuple, holes)), tuple(map(tuple, known)))
        change = advance(before, seqs, accounted)
        after = change.state
        db.execute("UPDATE gateways SET high = ? WHERE gateway = ?", (after.high, gateway))
        deleted, inserted = stored_change(before, after)
        db.executemany("DELETE FROM holes WHERE gateway = ? AND first = ?",
                       [(gateway, a) for a in deleted])  # fmt: skip
        db.executemany("INSERT INTO holes VALUES (?, ?, ?, ?)",
                       [(gateway, a, b, now) for a, b in inserted])  # fmt: skip
        if after.accounted != before.accounted:
            db.execute("DELETE FROM accounted WHERE gateway = ?", (gateway,))
            db.executemany("INSERT INTO accounted VALUES (?, ?, ?)",
                           [(gateway, a, b) for a, b in after.accounted])  # fmt: skip
        report.opened += [(gateway, hole) for hole in change.opened]
        report.closed += change.closed

    async def holes(self) -> list[Hole]:
        async with self._lock:
            rows = await asyncio.to_thread(
                lambda: self.db.execute(
                    "SELECT gateway, first, last FROM holes ORDER BY gateway, first"
                ).fetchall()
            )
        return [Hole(*row) for row in rows]

    async def totals(self) -> Totals:
        def query() -> Totals:
            db = self.db
            (messages,) = db.execute("SELECT count(*) FROM messages").fetchone()
            (readings,) = db.execute("SELECT count(*) FROM readings").fetchone()
            holes, missing = db.execute(
                "SELECT count(*), coalesce(sum(last - first + 1), 0) FROM holes"
            ).fetchone()
            return Totals(messages, readings, holes, missing)

        async with self._lock:
            return await asyncio.to_thread(query)


class _Lost(Exception):
    """A claim lost to another gateway's binding: the transaction rolls back."""


def _bindings(db: sqlite3.Connection, key_ids: Sequence[str]) -> dict[str, Binding]:
    marks = ", ".join("?" * len(key_ids))
    rows = db.execute(f"SELECT {BINDING_COLUMNS} FROM key_bindings "
                      f"WHERE key_id IN ({marks})", list(key_ids)).fetchall()  # fmt: skip
    return {row[0]: _binding(*row) for row in rows}


def _binding(kid: str, gateway: str, raw: bytes | None, voucher: str | None, bound: float,
             retired: float | None, reason: str | None) -> Binding:  # fmt: skip
    return Binding(kid, gateway, None if raw is None else bytes(raw), voucher, bound, retired,
                   reason)  # fmt: skip
