"""The outbox: the promise that nothing is lost silently.

A SQLite database in WAL mode. Entries (readings, events, command results,
already encoded) are buffered in memory and committed in one transaction per
window: the commit is the moment a reading is accepted. A window is *sealed* as
it is committed: its entries are grouped by (priority, kind), cut into messages
of at most `chunk_entries` entries and `chunk_bytes` bytes, and each message
gets its sequence number and its signed bytes right there, in the same
transaction. The store therefore holds exactly the bytes that will travel, and
draining a backlog is read a row, publish it, delete it after the broker's
PUBACK: no signing, no re-encoding, no second write on the way out.

Invariants (see docs/outbox.md):
- a committed entry leaves the store only inside an acknowledged message, or by
  eviction, and every eviction is recorded as an `outbox.evicted` event with
  counts, time range and the sequence numbers dropped;
- a message is handed to the uplink only once its sequence number is on disk
  (fsync'ed), so sequence numbers never go back, not even after a power cut;
- a message is resent with the same bytes until acknowledged; the command post
  drops duplicates by (gateway, sequence).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import structlog

log = structlog.get_logger(__name__)

EventEncoder = Callable[[str, dict[str, Any]], bytes]
Group = tuple[str, int, float, float, int, bytes]  # kind, priority, first/last ts, count, entries
Row = tuple[int, str, int, bytes, int, float, float, bool]  # a `messages` row, as inserted

TELEMETRY, EVENT, ALARM = 1, 2, 3
PRIORITIES_LOW_FIRST = (TELEMETRY, EVENT, ALARM)
MAX_BUFFERED = 200_000  # entries kept in memory while the disk refuses writes
CLOCK_FLOOR = 1_577_836_800.0  # 2020-01-01: a gateway whose clock says earlier booted without RTC
CHUNK_ENTRIES = 500  # default entries per message: the uplink's default batch_max_readings
CHUNK_BYTES = 256 * 1024  # and bytes: the uplink's largest message body
# and time: entries stamped further apart go to separate messages, so that max_age
# (which evicts whole messages) is exact to a minute, and entries stamped before the
# clock was set never share a message with entries stamped after.
CHUNK_SPAN = 60.0
READ_AHEAD = 64  # messages fetched per query while draining: one in-flight window
SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    priority INTEGER NOT NULL,
    count INTEGER NOT NULL,          -- entries carried
    first_ts REAL NOT NULL DEFAULT 0,  -- oldest and newest entry time stamp
    last_ts REAL NOT NULL DEFAULT 0,
    historical INTEGER NOT NULL DEFAULT 0,  -- sealed while the uplink was down
    -- the signed envelope, byte for byte as it travels. Last: a column stored after
    -- a ~19 KiB payload sits on its overflow pages, so stats, eviction and start-up
    -- would read every message whole to learn its count or time stamps.
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_priority ON messages (priority, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class Sealer(Protocol):
    """Signs `count` already-encoded, concatenated entries as message `seq`
    (cityedge.protocol.sealing.message_sealer binds the gateway's key and names)."""

    def __call__(
        self, *, kind: str, seq: int, historical: bool, entries: bytes, count: int
    ) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str  # "telemetry" | "event" | "result": one topic per kind
    priority: int  # cityedge.sdk.model.Priority
    ts: float
    body: bytes


class Sealed(NamedTuple):
    """A stored message: what the uplink publishes, and acknowledges back. (A named
    tuple: thousands are made per second while a backlog drains.)"""

    seq: int
    kind: str
    priority: int
    payload: bytes
    entry_count: int
    historical: bool


@dataclass(slots=True)
class OutboxStats:
    rows: dict[int, int]  # entries waiting for their PUBACK, by priority
    bytes: int
    sealed_unacked: int  # messages handed to the uplink, awaiting their PUBACK
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
        seal: Sealer,
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
        self._next_age_check = 0.0
        self.counters = _Counters()
        # highest seq and bytes stored per priority, in one pass over the table
        self._top: dict[int, int] = {}
        self._bytes = 0
        for priority, top, size in db.execute(
            "SELECT priority, MAX(seq), SUM(LENGTH(payload)) FROM messages GROUP BY priority"
        ):
            self._top[int(priority)] = int(top)
            self._bytes += int(size)
        self._last_seq = max(self._meta("seq"), *self._top.values(), 0)
        # What an earlier process left may still sit in the page cache only (kill -9):
        # the first message handed out fsyncs it, whatever it is.
        self._durable_seq = -1

    # --- opening ---------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        seal: Sealer,
        max_bytes: int,
        max_age: float,
        synchronous: str = "normal",
        event_encoder: EventEncoder = _default_event,
        chunk_entries: int = CHUNK_ENTRIES,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> Outbox:
        """Open (or create) the store. Messages carry at most `chunk_entries` entries
        and `chunk_bytes` bytes: the uplink's batch limits."""
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
            seal=seal,
            max_bytes=max_bytes,
            max_age=max_age,
            synchronous=synchronous,
            event_encoder=event_encoder,
            set_aside=set_aside,
            chunk_entries=chunk_entries,
            chunk_bytes=chunk_bytes,
        )
        outbox._seal_older_store()
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
            groups += self._chunk(
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

    # --- accepting ---------------------------------------------------------------------

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

    @contextlib.contextmanager
    def _transaction(self, *, fsync: bool = False) -> Iterator[None]:
        """One transaction, which also deletes what the broker acknowledged; committed
        with synchronous=FULL when `fsync`. The in-memory view of the acknowledged
        messages follows only once it committed."""
        if fsync:
            self._db.execute("PRAGMA synchronous=FULL")
        try:
            with self._db:
                acked = list(self._acked.values())
                if acked:
                    self._db.executemany(
                        "DELETE FROM messages WHERE seq BETWEEN ? AND ?",
                        _runs(sorted(self._acked)),
                    )
                yield
        finally:
            if fsync:
                self._db.execute(f"PRAGMA synchronous={self._synchronous}")
        for message in acked:
            del self._acked[message.seq]
        self._bytes -= sum(len(m.payload) for m in acked)

    def _insert(self, entries: list[Entry]) -> int:
        rows = self._sealed_rows(self._chunk(entries), historical=not self.online)
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

    def _set_meta_seq(self, seq: int) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES ('seq', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (seq,),
        )

    def _chunk(self, entries: list[Entry]) -> Iterator[Group]:
        """Group a window's entries by (priority, kind), in order of arrival, and cut
        each group at the message limits: (kind, priority, first_ts, last_ts, count,
        concatenated bodies)."""
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
                yield (
                    kind,
                    priority,
                    min(stamps),
                    max(stamps),
                    len(part),
                    b"".join(e.body for e in part),
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
                seqs=None,  # never sealed: no sequence number was spent
            )

    # --- bounds ------------------------------------------------------------------------

    def _enforce_bounds(self) -> None:
        now = time.monotonic()
        if now >= self._next_age_check:
            # Messages are stored in time order, so the oldest per priority (by seq, on
            # the index) tells whether anything is too old: no table scan per commit.
            self._next_age_check = now + min(60.0, self.max_age / 10)
            self._evict_older_than(time.time() - self.max_age)
        if self._bytes > self.max_bytes:
            # Go below the bound by a margin so that eviction is not run on every commit.
            self._evict_bytes(self._bytes - int(self.max_bytes * 0.9), reason="max-bytes")

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
        with self._db:
            self._db.executemany("DELETE FROM messages WHERE seq = ?", [(s,) for s in victims])
        self._bytes -= size
        self._ahead.clear()  # fetched messages may be among the victims: fetch again
        self._record_eviction(
            reason, {priority: count}, first_ts, last_ts, size, seqs=(victims[0], victims[-1])
        )
        return size

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
        names = {TELEMETRY: "telemetry", EVENT: "event", ALARM: "alarm"}
        by_name = {names.get(p, str(p)): n for p, n in counts.items()}
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

    # --- sending -----------------------------------------------------------------------

    def next_message(self, *, live_after: int, backlog: bool) -> Sealed | None:
        """The next message to publish: highest priority first, oldest first. Live
        messages are those above `live_after` (sealed since the link came up), the
        backlog those at or below it. Its sequence number is on disk before it is
        returned."""
        if not backlog and self._last_seq <= live_after:
            return None  # nothing sealed since the link came up
        for priority in reversed(PRIORITIES_LOW_FIRST):
            key = (priority, backlog)
            ahead = self._ahead.get(key)
            if not ahead:
                ahead = self._fetch(key, live_after)
                if not ahead:
                    continue
            message = ahead.popleft()
            self._cursor[key] = message.seq
            if message.seq > self._durable_seq:
                self._sync()
            self._inflight.add(message.seq)
            return message
        return None

    def _fetch(self, key: tuple[int, bool], live_after: int) -> deque[Sealed] | None:
        priority, backlog = key
        after = self._cursor.get(key, 0 if backlog else live_after)
        end = min(live_after if backlog else self._last_seq, self._top.get(priority, 0))
        while after < end:  # nothing of this priority there: no query
            read = self._db.execute(
                "SELECT seq, kind, payload, count, historical FROM messages "
                "WHERE priority = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                (priority, after, end, READ_AHEAD),
            ).fetchall()
            fetched = deque(
                Sealed(seq, kind, priority, payload, count, bool(historical))
                for seq, kind, payload, count, historical in read
                if seq not in self._acked
            )
            if fetched:
                self._ahead[key] = fetched
                return fetched
            # acknowledged ones only (deleted at the next commit): read on past them
            after = read[-1][0] if read else end
            self._cursor[key] = after
        return None

    def _sync(self) -> None:
        """fsync the WAL (one small FULL transaction covers every frame before it)."""
        with self._transaction(fsync=True):
            self._set_meta_seq(self._last_seq)
        self._durable_seq = self._last_seq

    def release(self) -> None:
        """The link went down: everything not acknowledged is sent again, from the
        oldest, in the next session."""
        self._cursor.clear()
        self._ahead.clear()
        self._inflight.clear()

    def ack(self, messages: Iterable[Sealed]) -> None:
        """The broker acknowledged these. Deleted at the next commit (a crash before
        that means a resend, which the command post drops by sequence number)."""
        for message in messages:
            self._inflight.discard(message.seq)
            self._acked[message.seq] = message
        if len(self._acked) >= 256:
            self._flush_acks()

    def _flush_acks(self) -> None:
        if self._acked:
            with self._transaction():
                pass

    def last_seq(self) -> int:
        return self._last_seq

    # --- observing ---------------------------------------------------------------------

    def stats(self) -> OutboxStats:
        rows: dict[int, int] = {}
        for p, n in self._db.execute("SELECT priority, SUM(count) FROM messages GROUP BY priority"):
            rows[int(p)] = int(n)
        for m in self._acked.values():  # deleted at the next commit: already delivered
            rows[m.priority] -= m.entry_count
        rows = {p: n for p, n in rows.items() if n > 0}
        oldest = self._db.execute("SELECT MIN(first_ts) FROM messages").fetchone()[0]
        return OutboxStats(
            rows=rows,
            bytes=self._bytes - sum(len(m.payload) for m in self._acked.values()),
            sealed_unacked=len(self._inflight),
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


def _runs(seqs: list[int]) -> list[tuple[int, int]]:
    """Sorted numbers as (first, last) runs: PUBACKs mostly arrive in order, so a
    few hundred acknowledgements are a handful of range deletes."""
    runs: list[tuple[int, int]] = []
    for seq in seqs:
        if runs and runs[-1][1] == seq - 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


def stored_messages(db: sqlite3.Connection) -> Iterator[tuple[int, str, int, bytes]]:
    """(seq, kind, priority, payload) of every stored message, in sequence order: for
    tools reading a store they do not own."""
    yield from db.execute("SELECT seq, kind, priority, payload FROM messages ORDER BY seq")


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        db.isolation_level = "DEFERRED"  # `with db:` groups statements into one transaction
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.DatabaseError(f"cannot use WAL journal (got {mode})")
        db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        # Builds with SECURE_DELETE (Debian's) zero every freed page: each delivered
        # message would be written a second time, as zeros. Readings are not secrets
        # (no personal data enters the outbox, docs/privacy.md); FAST still clears
        # what shares a page with live rows, at no extra I/O.
        db.execute("PRAGMA secure_delete=FAST")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check}")
        db.executescript(SCHEMA)
        _add_columns(db)
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


def _add_columns(db: sqlite3.Connection) -> None:
    """A `messages` table of an earlier layout lacks the time range and the flag."""
    have = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
    for column in ("first_ts REAL NOT NULL DEFAULT 0", "last_ts REAL NOT NULL DEFAULT 0",
                   "historical INTEGER NOT NULL DEFAULT 0"):  # fmt: skip
        if column.split()[0] not in have:
            db.execute(f"ALTER TABLE messages ADD COLUMN {column}")


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
