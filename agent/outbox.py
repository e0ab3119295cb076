"""The outbox: the promise that nothing is lost silently.

A SQLite database in WAL mode. Entries (readings, events, command results,
already encoded) are buffered in memory and committed in one transaction per
window: the commit is the moment a reading is accepted. A window is stored as
*chunks* — one row per (priority, kind) and up to a message's worth of
entries, their bytes concatenated as they will travel — so that draining a
backlog reads one row per message instead of one per reading, and flash sees
one small row header per few hundred readings. The uplink picks chunks into
batches, *seals* them — gives each batch a sequence number and its signed
bytes, stores the message and deletes its chunks in one fsync'ed transaction —
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

import contextlib
import sqlite3
import sys
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
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
CHUNK_ENTRIES = 500  # default entries per chunk: the uplink's default batch_max_readings
CHUNK_BYTES = 256 * 1024  # and bytes: the uplink's largest message body
# and time: entries stamped further apart go to separate chunks, so that max_age
# (which evicts whole chunks) is exact to a minute, and entries stamped before the
# clock was set never share a chunk with entries stamped after.
CHUNK_SPAN = 60.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    -- AUTOINCREMENT: an id is never reused after its chunk was sealed, so "above the
    -- watermark" always means "committed after it" (live, not backlog)
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    priority INTEGER NOT NULL,
    first_ts REAL NOT NULL,
    last_ts REAL NOT NULL,
    count INTEGER NOT NULL,
    sizes BLOB NOT NULL,  -- each entry's length, uint32 little-endian
    body BLOB NOT NULL    -- the entries' encoded bytes, concatenated
);
CREATE INDEX IF NOT EXISTS chunks_by_priority ON chunks (priority, id);
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
    """Consecutive chunks of one priority and kind: what one message will carry."""

    kind: str
    priority: int
    chunk_ids: tuple[int, int]  # first and last; a batch is a run of its priority's chunks
    count: int
    entries: bytes  # the entries' bytes, concatenated (an envelope's array items)
    sizes: bytes
    first_ts: float
    last_ts: float

    @property
    def bodies(self) -> list[bytes]:
        """The entries one by one (for tests and tools; sealing uses `entries`)."""
        return split_entries(self.sizes, self.entries)


def pack_sizes(lengths: Iterable[int]) -> bytes:
    sizes = array("I", lengths)
    if sys.byteorder == "big":
        sizes.byteswap()
    return sizes.tobytes()


def split_entries(sizes: bytes, body: bytes) -> list[bytes]:
    """The entries of a chunk (or batch) from its `sizes` and concatenated `body`."""
    lengths = array("I")
    lengths.frombytes(sizes)
    if sys.byteorder == "big":
        lengths.byteswap()
    if sum(lengths) != len(body):
        raise ValueError(f"chunk sizes add up to {sum(lengths)} bytes, body has {len(body)}")
    ends = list(accumulate(lengths))
    return [body[end - n : end] for n, end in zip(lengths, ends, strict=True)]


def stored_chunks(
    db: sqlite3.Connection,
) -> Iterator[tuple[int, str, int, float, float, list[bytes]]]:
    """(id, kind, priority, first_ts, last_ts, entries) of every chunk not yet sealed,
    highest priority first, oldest first: for tools reading a store they do not own."""
    for chunk_id, kind, priority, first_ts, last_ts, sizes, body in db.execute(
        "SELECT id, kind, priority, first_ts, last_ts, sizes, body FROM chunks "
        "ORDER BY priority DESC, id"
    ):
        try:
            entries = split_entries(sizes, body)
        except ValueError:  # a damaged chunk is shown whole, never skipped
            entries = [bytes(body)]
        yield chunk_id, kind, priority, first_ts, last_ts, entries


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
        chunk_entries: int = CHUNK_ENTRIES,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self._db = db
        self.path = path
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.chunk_entries = chunk_entries
        self.chunk_bytes = chunk_bytes
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
            db.execute(
                "SELECT COALESCE(SUM(LENGTH(body) + LENGTH(sizes)), 0) FROM chunks"
            ).fetchone()[0]
        ) + int(db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM messages").fetchone()[0])
        self._watermark = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM chunks").fetchone()[0])

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
        chunk_entries: int = CHUNK_ENTRIES,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> Outbox:
        """Open (or create) the store. Chunks hold at most `chunk_entries` entries and
        `chunk_bytes` bytes: set them to the uplink's batch limits, so that a backlog
        message is one chunk."""
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
            chunk_entries=chunk_entries,
            chunk_bytes=chunk_bytes,
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
        """Write everything buffered in one transaction; returns entries committed."""
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

    def _insert(self, entries: list[Entry]) -> int:
        chunks = list(self._chunk(entries))
        with self._db:
            self._db.executemany(
                "INSERT INTO chunks (kind, priority, first_ts, last_ts, count, sizes, body) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                chunks,
            )
        size = sum(len(c[5]) + len(c[6]) for c in chunks)
        self._bytes += size
        self._watermark = int(
            self._db.execute("SELECT COALESCE(MAX(id), 0) FROM chunks").fetchone()[0]
        )
        self.counters.commits += 1
        self.counters.rows_committed += len(entries)
        self.counters.bytes_committed += size
        return len(entries)

    def _chunk(self, entries: list[Entry]) -> Iterator[tuple[Any, ...]]:
        """Group a window's entries by (priority, kind), in order of arrival, and cut
        each group at the chunk limits."""
        groups: dict[tuple[int, str], list[Entry]] = {}
        for e in entries:
            groups.setdefault((e.priority, e.kind), []).append(e)
        for (priority, kind), group in groups.items():
            start = 0
            while start < len(group):
                end, size = start, 0
                low = high = group[start].ts
                while end < len(group) and end - start < self.chunk_entries:
                    e = group[end]
                    size += len(e.body)
                    low, high = min(low, e.ts), max(high, e.ts)
                    if end > start and (size > self.chunk_bytes or high - low > CHUNK_SPAN):
                        break
                    end += 1
                part = group[start:end]
                stamps = [e.ts for e in part]
                bodies = [e.body for e in part]
                yield (
                    kind,
                    priority,
                    min(stamps),
                    max(stamps),
                    len(part),
                    pack_sizes(map(len, bodies)),
                    b"".join(bodies),
                )
                start = end

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
        # A chunk goes when its newest entry is too old. An entry stamped before
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
        """Delete the oldest rows of the lowest priority first until `need` bytes are free."""
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
        """Delete chunks of `priority` oldest first until `enough(first_ts, last_ts,
        bytes so far)`; the chunk that satisfies it is deleted too when `inclusive`.
        Returns bytes freed."""
        count, size, upto = 0, 0, None
        first_ts = last_ts = None
        for chunk_id, first, last, n, length in self._db.execute(
            "SELECT id, first_ts, last_ts, count, LENGTH(body) + LENGTH(sizes) FROM chunks "
            "WHERE priority = ? ORDER BY id",
            (priority,),
        ):
            if not inclusive and enough(first, last, size):
                break
            count, size, upto = count + n, size + length, chunk_id
            first_ts = first if first_ts is None else min(first_ts, first)
            last_ts = last if last_ts is None else max(last_ts, last)
            if inclusive and enough(first, last, size):
                break
        if not count:
            return 0
        with self._db:
            self._db.execute("DELETE FROM chunks WHERE priority = ? AND id <= ?", (priority, upto))
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
        self, *, live_after: int, backlog: bool, max_entries: int, max_bytes: int = CHUNK_BYTES
    ) -> Batch | None:
        """The next chunks to send: highest priority first, oldest first, one kind per
        batch, whole chunks up to `max_entries` and `max_bytes` (at least one)."""
        for priority in reversed(PRIORITIES_LOW_FIRST):
            after = self._picked_upto.get((priority, backlog), 0 if backlog else live_after)
            upto = live_after if backlog else 1 << 62
            heads = self._db.execute(
                "SELECT id, kind, count, LENGTH(body) FROM chunks "
                "WHERE priority = ? AND id > ? AND id <= ? ORDER BY id LIMIT 64",
                (priority, after, upto),
            ).fetchall()
            if not heads:
                continue
            kind = heads[0][1]
            last, entries, size = heads[0][0], heads[0][2], heads[0][3]
            for chunk_id, other_kind, n, length in heads[1:]:
                if other_kind != kind or entries + n > max_entries or size + length > max_bytes:
                    break
                last, entries, size = chunk_id, entries + n, size + length
            first = heads[0][0]
            rows = self._db.execute(
                "SELECT first_ts, last_ts, sizes, body FROM chunks "
                "WHERE priority = ? AND id BETWEEN ? AND ? ORDER BY id",
                (priority, first, last),
            ).fetchall()
            self._picked_upto[(priority, backlog)] = last
            if len(rows) == 1:
                first_ts, last_ts, sizes, body = rows[0]
                return Batch(kind, priority, (first, last), entries, body, sizes, first_ts, last_ts)
            firsts, lasts, sizes_parts, bodies = zip(*rows, strict=True)
            return Batch(
                kind,
                priority,
                (first, last),
                entries,
                b"".join(bodies),
                b"".join(sizes_parts),
                min(firsts),
                max(lasts),
            )
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
            sealed.append(Sealed(seq, batch.kind, batch.priority, encode(batch, seq), batch.count))
        self._db.execute("PRAGMA synchronous=FULL")  # the sequence must survive a power cut
        try:
            with self._db:
                self._flush_acks(commit=False)
                self._db.executemany(
                    "INSERT INTO messages (seq, kind, priority, payload, count) VALUES (?,?,?,?,?)",
                    [(s.seq, s.kind, s.priority, s.payload, s.count) for s in sealed],
                )
                # A batch is a run, in id order, of its priority's chunks after a point:
                # exactly the chunks of that priority between its first and last id.
                self._db.executemany(
                    "DELETE FROM chunks WHERE priority = ? AND id BETWEEN ? AND ?",
                    [(b.priority, *b.chunk_ids) for b in batches],
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
            len(b.entries) + len(b.sizes) for b in batches
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
            for p, n in self._db.execute(
                "SELECT priority, SUM(count) FROM chunks GROUP BY priority"
            )
        }
        oldest = self._db.execute("SELECT MIN(first_ts) FROM chunks").fetchone()[0]
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
        _migrate_rows(db)
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


def _migrate_rows(db: sqlite3.Connection) -> None:
    """A store written by cityedge 0.1 keeps one row per entry in `rows`: move them
    into one-entry chunks, in order, in one transaction (nothing is re-encoded)."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'rows'").fetchone():
        return
    with db:
        moved = db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
        db.executemany(
            "INSERT INTO chunks (kind, priority, first_ts, last_ts, count, sizes, body) "
            "VALUES (?, ?, ?, ?, 1, ?, ?)",
            (
                (kind, priority, ts, ts, pack_sizes([len(body)]), body)
                for kind, priority, ts, body in db.execute(
                    "SELECT kind, priority, ts, body FROM rows ORDER BY id"
                )
            ),
        )
        db.execute("DROP TABLE rows")
    log.info("outbox.migrated", entries=int(moved), to="chunks")


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
