"""The outbox: the promise that nothing is lost silently.

A SQLite database in WAL mode. Entries (readings, events, command results,
already encoded) are buffered in memory and committed in one transaction per
window: the commit is the moment a reading is accepted. The uplink picks rows
into batches, *seals* them — gives each batch a sequence number and its signed
bytes, stores the message and deletes its rows in one fsync'ed transaction —
and publishes; a message is deleted only after the broker's PUBACK.

Invariants (see docs/outbox.md):
- a committed row leaves the store only inside a sealed message, or by eviction,
  and every eviction is recorded as an `outbox.evicted` event with counts;
- sequence numbers are allocated in fsync'ed transactions, so they never go
  back, not even after a power cut;
- a sealed message is resent with the same bytes until acknowledged; the command
  post drops duplicates by (gateway, sequence).
"""

from __future__ import annotations

import bisect
import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

EventEncoder = Callable[[str, dict[str, Any]], bytes]

TELEMETRY, EVENT, ALARM = 1, 2, 3
PRIORITIES_LOW_FIRST = (TELEMETRY, EVENT, ALARM)
MAX_BUFFERED = 200_000  # entries kept in memory while the disk refuses writes
CLOCK_FLOOR = 1_577_836_800.0  # 2020-01-01: a gateway whose clock says earlier booted without RTC
SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    priority INTEGER NOT NULL,
    ts REAL NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS rows_by_priority ON rows (priority, id);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    priority INTEGER NOT NULL,
    payload BLOB NOT NULL,
    count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str  # "telemetry" | "event" | "result": one topic per kind
    priority: int  # agent.model.Priority
    ts: float
    body: bytes


@dataclass(frozen=True, slots=True)
class Batch:
    kind: str
    priority: int
    row_ids: tuple[int, ...]
    bodies: list[bytes]
    first_ts: float
    last_ts: float


@dataclass(frozen=True, slots=True)
class Sealed:
    seq: int
    kind: str
    priority: int
    payload: bytes
    count: int


@dataclass(slots=True)
class OutboxStats:
    rows: dict[int, int]  # by priority
    bytes: int
    sealed_unacked: int
    oldest_ts: float | None
    last_seq: int
    pending: int
    evicted: dict[str, int]
    commits: int
    rows_committed: int
    bytes_committed: int
    disk_full: bool
    set_aside: str | None


def _default_event(kind: str, data: dict[str, Any]) -> bytes:
    import msgpack

    return bytes(msgpack.packb({"kind": kind, "data": data}))


@dataclass(slots=True)
class _Counters:
    commits: int = 0
    rows_committed: int = 0
    bytes_committed: int = 0
    evicted: dict[str, int] = field(default_factory=dict)


class Outbox:
    def __init__(
        self,
        db: sqlite3.Connection,
        path: Path,
        *,
        max_bytes: int,
        max_age: float,
        synchronous: str,
        event_encoder: EventEncoder,
        set_aside: Path | None,
    ) -> None:
        self._db = db
        self.path = path
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._synchronous = synchronous.upper()
        self._encode_event = event_encoder
        self.set_aside = set_aside
        self._buffer: list[Entry] = []
        self._acked: list[int] = []
        self._acked_set: set[int] = set()
        self._picked_upto: dict[tuple[int, bool], int] = {}
        self._disk_full = False
        self._next_age_check = 0.0
        self.counters = _Counters()
        self._last_seq = self._meta("seq")
        self._bytes = int(
            db.execute("SELECT COALESCE(SUM(LENGTH(body)), 0) FROM rows").fetchone()[0]
        ) + int(db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM messages").fetchone()[0])
        self._watermark = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM rows").fetchone()[0])

    # --- opening ---------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        max_bytes: int,
        max_age: float,
        synchronous: str = "normal",
        event_encoder: EventEncoder = _default_event,
    ) -> Outbox:
        path.parent.mkdir(parents=True, exist_ok=True)
        set_aside: Path | None = None
        try:
            db = _connect(path, synchronous)
        except sqlite3.DatabaseError as exc:
            set_aside = _set_aside(path, str(exc))
            db = _connect(path, synchronous)
        outbox = cls(
            db,
            path,
            max_bytes=max_bytes,
            max_age=max_age,
            synchronous=synchronous,
            event_encoder=event_encoder,
            set_aside=set_aside,
        )
        if set_aside is not None:
            outbox.add([outbox._event("outbox.corrupt", {"set_aside": str(set_aside)})])
            outbox.commit()
        return outbox

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _event(self, kind: str, data: dict[str, Any]) -> Entry:
        priority = ALARM if kind in ("outbox.disk_full", "outbox.corrupt") else EVENT
        return Entry("event", priority, time.time(), self._encode_event(kind, data))

    # --- accepting ---------------------------------------------------------------------

    def add(self, entries: Sequence[Entry]) -> None:
        self._buffer.extend(entries)
        if len(self._buffer) > MAX_BUFFERED:
            self._shed_buffer()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def commit(self) -> int:
        """Write everything buffered in one transaction; returns rows committed."""
        self._flush_acks()
        if not self._buffer:
            return 0
        rows = self._buffer
        try:
            committed = self._insert(rows)
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
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

    def _insert(self, rows: list[Entry]) -> int:
        size = 0
        with self._db:
            self._db.executemany(
                "INSERT INTO rows (kind, priority, ts, body) VALUES (?, ?, ?, ?)",
                [(e.kind, e.priority, e.ts, e.body) for e in rows],
            )
        for e in rows:
            size += len(e.body)
        self._bytes += size
        self._watermark = int(
            self._db.execute("SELECT COALESCE(MAX(id), 0) FROM rows").fetchone()[0]
        )
        self.counters.commits += 1
        self.counters.rows_committed += len(rows)
        self.counters.bytes_committed += size
        return len(rows)

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
                if not _is_full(exc):
                    raise
        self._buffer = rows  # kept in memory (bounded by MAX_BUFFERED) until space returns
        return 0

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
            )

    # --- bounds ------------------------------------------------------------------------

    def _enforce_bounds(self) -> None:
        now = time.monotonic()
        if now >= self._next_age_check:
            # Rows are appended in time order, so the oldest row per priority (by id, on
            # the index) tells whether anything is too old: no table scan per commit.
            self._next_age_check = now + min(60.0, self.max_age / 10)
            self._evict_older_than(time.time() - self.max_age)
        if self._bytes > self.max_bytes:
            # Go below the bound by a margin so that eviction is not run on every commit.
            self._evict_bytes(self._bytes - int(self.max_bytes * 0.9), reason="max-bytes")

    def _evict_older_than(self, horizon: float) -> None:
        # A row stamped before CLOCK_FLOOR was taken before the clock was set (cold boot
        # without RTC): its age is unknown, so age alone stops there instead of dropping
        # a whole offline boot the moment NTP steps the clock; max_bytes still bounds it.
        for priority in PRIORITIES_LOW_FIRST:
            self._evict_oldest(
                priority, lambda ts, _size: ts >= horizon or ts < CLOCK_FLOOR, reason="max-age"
            )

    def _evict_bytes(self, need: int, *, reason: str) -> bool:
        """Delete the oldest rows of the lowest priority first until `need` bytes are free."""
        freed = 0
        for priority in PRIORITIES_LOW_FIRST:
            if freed >= need:
                break
            still_needed = need - freed

            def enough(_ts: float, size: int, still_needed: int = still_needed) -> bool:
                return size >= still_needed

            freed += self._evict_oldest(priority, enough, reason=reason, inclusive=True)
        if freed:
            with contextlib.suppress(sqlite3.OperationalError):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return freed > 0

    def _evict_oldest(
        self,
        priority: int,
        enough: Callable[[float, int], bool],
        *,
        reason: str,
        inclusive: bool = False,
    ) -> int:
        """Delete rows of `priority` oldest first until `enough(ts, bytes so far)`; the
        row that satisfies it is deleted too when `inclusive`. Returns bytes freed."""
        count, size, upto = 0, 0, None
        first_ts = last_ts = None
        for row_id, ts, length in self._db.execute(
            "SELECT id, ts, LENGTH(body) FROM rows WHERE priority = ? ORDER BY id", (priority,)
        ):
            if not inclusive and enough(ts, size):
                break
            count, size, upto = count + 1, size + length, row_id
            first_ts = ts if first_ts is None else min(first_ts, ts)
            last_ts = ts if last_ts is None else max(last_ts, ts)
            if inclusive and enough(ts, size):
                break
        if not count:
            return 0
        with self._db:
            self._db.execute("DELETE FROM rows WHERE priority = ? AND id <= ?", (priority, upto))
        self._bytes -= size
        self._picked_upto.clear()
        self._record_eviction(reason, {priority: count}, first_ts, last_ts, size)
        return size

    def _record_eviction(
        self,
        reason: str,
        counts: dict[int, int],
        first_ts: float | None,
        last_ts: float | None,
        size: int,
    ) -> None:
        names = {TELEMETRY: "telemetry", EVENT: "event", ALARM: "alarm"}
        by_name = {names.get(p, str(p)): n for p, n in counts.items()}
        for name, n in by_name.items():
            self.counters.evicted[name] = self.counters.evicted.get(name, 0) + n
        data = {
            "reason": reason,
            "counts": by_name,
            "first_ts": first_ts,
            "last_ts": last_ts,
            "bytes": size,
        }
        log.warning("outbox.evicted", **data)
        self._buffer.append(self._event("outbox.evicted", data))

    # --- sending -----------------------------------------------------------------------

    def watermark(self) -> int:
        return self._watermark

    def next_batch(
        self, *, live_after: int, backlog: bool, max_entries: int, max_bytes: int = 256 * 1024
    ) -> Batch | None:
        """The next rows to send: highest priority first, oldest first, one kind per batch."""
        for priority in reversed(PRIORITIES_LOW_FIRST):
            after = self._picked_upto.get((priority, backlog), 0 if backlog else live_after)
            if backlog:
                sql = (
                    "SELECT id, kind, ts, body FROM rows WHERE priority = ? AND id > ? "
                    "AND id <= ? ORDER BY id LIMIT ?"
                )
                args: tuple[Any, ...] = (priority, after, live_after, max_entries)
            else:
                sql = (
                    "SELECT id, kind, ts, body FROM rows WHERE priority = ? AND id > ? "
                    "ORDER BY id LIMIT ?"
                )
                args = (priority, after, max_entries)
            rows = self._db.execute(sql, args).fetchall()
            if not rows:
                continue
            # Column-wise, so the per-row work happens in C: this runs for every
            # 500 readings of a backlog drain.
            ids, kinds, stamps, bodies = zip(*rows, strict=True)
            kind, n = kinds[0], len(rows)
            if kinds.count(kind) != n:  # one kind per batch: stop at the first other
                n = next(i for i, k in enumerate(kinds) if k != kind)
            if sum(map(len, bodies[:n])) > max_bytes:
                n = max(1, bisect.bisect_right(list(accumulate(map(len, bodies[:n]))), max_bytes))
            ids, stamps = ids[:n], stamps[:n]
            self._picked_upto[(priority, backlog)] = ids[-1]
            return Batch(kind, priority, ids, list(bodies[:n]), min(stamps), max(stamps))
        return None

    def release(self, batches: Sequence[Batch]) -> None:
        if batches:
            self._picked_upto.clear()

    def seal(self, batches: Sequence[Batch], encode: Callable[[Batch, int], bytes]) -> list[Sealed]:
        """Give each batch a sequence number and its bytes, durably, before it is sent."""
        sealed: list[Sealed] = []
        seq = self._last_seq
        for batch in batches:
            seq += 1
            sealed.append(
                Sealed(seq, batch.kind, batch.priority, encode(batch, seq), len(batch.bodies))
            )
        self._db.execute("PRAGMA synchronous=FULL")  # the sequence must survive a power cut
        try:
            with self._db:
                self._flush_acks(commit=False)
                self._db.executemany(
                    "INSERT INTO messages (seq, kind, priority, payload, count) VALUES (?,?,?,?,?)",
                    [(s.seq, s.kind, s.priority, s.payload, s.count) for s in sealed],
                )
                # A batch is a prefix, in id order, of its priority's rows after a
                # point: exactly the rows of that priority between its first and last id.
                self._db.executemany(
                    "DELETE FROM rows WHERE priority = ? AND id BETWEEN ? AND ?",
                    [(b.priority, b.row_ids[0], b.row_ids[-1]) for b in batches if b.row_ids],
                )
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES ('seq', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (seq,),
                )
        finally:
            self._db.execute(f"PRAGMA synchronous={self._synchronous}")
            self._picked_upto.clear()
        self._last_seq = seq
        self._bytes += sum(len(s.payload) for s in sealed) - sum(
            len(body) for batch in batches for body in batch.bodies
        )
        return sealed

    def unacked(self) -> list[Sealed]:
        self._flush_acks()
        return [
            Sealed(seq, kind, priority, payload, count)
            for seq, kind, priority, payload, count in self._db.execute(
                "SELECT seq, kind, priority, payload, count FROM messages ORDER BY seq"
            )
        ]

    def ack(self, seqs: Iterable[int]) -> None:
        """The broker acknowledged these. Deleted at the next commit (a crash before
        that means a resend, which the command post drops by sequence number)."""
        for seq in seqs:
            if seq not in self._acked_set:
                self._acked_set.add(seq)
                self._acked.append(seq)
        if len(self._acked) >= 256:
            self._flush_acks()

    def _flush_acks(self, *, commit: bool = True) -> None:
        if not self._acked:
            return
        acked = [(s,) for s in self._acked]
        size = 0
        for chunk_start in range(0, len(acked), 500):
            chunk = [s for (s,) in acked[chunk_start : chunk_start + 500]]
            marks = ",".join("?" * len(chunk))
            size += int(
                self._db.execute(
                    "SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM messages "
                    f"WHERE seq IN ({marks})",
                    chunk,
                ).fetchone()[0]
            )
        if commit:
            with self._db:
                self._db.executemany("DELETE FROM messages WHERE seq = ?", acked)
        else:
            self._db.executemany("DELETE FROM messages WHERE seq = ?", acked)
        self._bytes -= size
        self._acked.clear()
        self._acked_set.clear()

    def last_seq(self) -> int:
        return self._last_seq

    # --- observing ---------------------------------------------------------------------

    def stats(self) -> OutboxStats:
        rows = {
            int(p): int(n)
            for p, n in self._db.execute("SELECT priority, COUNT(*) FROM rows GROUP BY priority")
        }
        oldest = self._db.execute("SELECT MIN(ts) FROM rows").fetchone()[0]
        unacked = int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
        return OutboxStats(
            rows=rows,
            bytes=self._bytes,
            sealed_unacked=unacked - len(self._acked),
            oldest_ts=oldest,
            last_seq=self._last_seq,
            pending=len(self._buffer),
            evicted=dict(self.counters.evicted),
            commits=self.counters.commits,
            rows_committed=self.counters.rows_committed,
            bytes_committed=self.counters.bytes_committed,
            disk_full=self._disk_full,
            set_aside=str(self.set_aside) if self.set_aside else None,
        )

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.commit()
            self._flush_acks()
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._db.close()


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        db.isolation_level = "DEFERRED"  # `with db:` groups statements into one transaction
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.DatabaseError(f"cannot use WAL journal (got {mode})")
        db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check}")
        db.executescript(SCHEMA)
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


def _set_aside(path: Path, reason: str) -> Path:
    """Keep a corrupt store for the post-mortem (never delete data), start a fresh one."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    path.rename(aside)
    for suffix in ("-wal", "-shm"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            extra.rename(aside.with_name(aside.name + suffix))
    log.error("outbox.corrupt", path=str(path), set_aside=str(aside), reason=reason)
    return aside


def _is_full(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "full" in text or "no space" in text
