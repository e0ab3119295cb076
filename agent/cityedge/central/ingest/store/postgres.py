"""The city's store: PostgreSQL through asyncpg, readings partitioned by day (UTC).

One transaction per batch, a handful of round trips whatever its size: the
batch's gateway rows are locked in gateway order (`FOR UPDATE`, so two workers
never deadlock and never interleave one gateway's bookkeeping), new messages are
found by `INSERT … ON CONFLICT DO NOTHING RETURNING`, holes are advanced in Python
(`holes.advance`) and written back, and readings, events and results go in by
binary COPY. A day's partition is created on demand, under an advisory lock, in a
short transaction of its own before the batch's.

A key is claimed by `INSERT … ON CONFLICT DO NOTHING` and read back by a statement of
its own: under READ COMMITTED the insert waits for a competing claim to commit, and
only a new statement's snapshot sees the row that won.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar

import asyncpg

from cityedge.central.ingest.decode import Decoded, Rejected
from cityedge.central.ingest.holes import Range, SeqState, advance, stored_change
from cityedge.central.ingest.rows import (
    EVENT_COLUMNS,
    READING_COLUMNS,
    RESULT_COLUMNS,
    Row,
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
from cityedge.central.ingest.store.pg_schema import prepare

# What a lost or confused connection raises; the store then reconnects on the next call.
DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
             asyncpg.exceptions.InternalClientError)  # fmt: skip
PARTITION_LOCK = 0x63697480  # advisory lock key: partition creation (pg_schema has the other)
UTC = dt.UTC
T = TypeVar("T")

BINDING_COLUMNS = "key_id, gateway, public_key, vouched_by, bound, retired, retired_reason"


class _Lost(Exception):
    """A claim lost to another gateway's binding: the transaction rolls back."""


async def _insert_claims(conn: asyncpg.Connection, claims: Sequence[Binding]) -> None:
    await conn.executemany(
        "INSERT INTO key_bindings (key_id, gateway, public_key, vouched_by) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (key_id) DO UPDATE SET "
        "public_key = excluded.public_key, vouched_by = excluded.vouched_by "
        "WHERE key_bindings.gateway = excluded.gateway "
        "AND excluded.public_key IS NOT NULL AND key_bindings.public_key IS NULL",
        # in key order, so two workers claiming the same keys never deadlock
        sorted((c.key_id, c.gateway, c.public_key, c.vouched_by) for c in claims),
    )


async def _bindings(conn: asyncpg.Connection, key_ids: Collection[str]) -> dict[str, Binding]:
    rows = await conn.fetch(f"SELECT {BINDING_COLUMNS} FROM key_bindings "
                            "WHERE key_id = ANY($1::text[])", list(key_ids))  # fmt: skip
    return {r["key_id"]: _binding(r) for r in rows}


def _binding(r: asyncpg.Record) -> Binding:
    raw, retired = r["public_key"], r["retired"]
    return Binding(r["key_id"], r["gateway"], None if raw is None else bytes(raw),
                   r["vouched_by"], r["bound"].timestamp(),
                   None if retired is None else retired.timestamp(),
                   r["retired_reason"])  # fmt: skip


async def _retire(conn: asyncpg.Connection, key_id: str, reason: str | None,
                  force: bool) -> tuple[Retire, Binding | None]:  # fmt: skip
    gateway = await conn.fetchval("SELECT gateway FROM key_bindings WHERE key_id = $1", key_id)
    if gateway is None:
        return Retire.UNKNOWN, None
    # The gateway's keys locked in key order: a second retirement of its keys waits here,
    # then counts what this one left.
    keys = await conn.fetch("SELECT key_id, retired FROM key_bindings WHERE gateway = $1 "
                            "ORDER BY key_id FOR UPDATE", gateway)  # fmt: skip
    held = (await _bindings(conn, [key_id]))[key_id]
    if held.retired is not None:
        return Retire.ALREADY, held
    if not force and not any(k["retired"] is None and k["key_id"] != key_id for k in keys):
        return Retire.LAST, held
    await conn.execute("UPDATE key_bindings SET retired = now(), retired_reason = $2 "
                       "WHERE key_id = $1", key_id, reason)  # fmt: skip
    return Retire.RETIRED, (await _bindings(conn, [key_id]))[key_id]


def when(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, UTC)


def partition_name(day: dt.date) -> str:
    return f"readings_{day:%Y%m%d}"


def _timed(rows: list[Row]) -> list[Row]:
    # The readings of one device poll share a time stamp: convert each value once.
    seen: dict[float, dt.datetime] = {}
    out = []
    for row in rows:
        ts = row[0]
        stamp = seen.get(ts)
        if stamp is None:
            stamp = seen[ts] = when(ts)
        out.append((stamp, *row[1:]))
    return out


def days_of(messages: Sequence[Decoded]) -> set[dt.date]:
    """The UTC days the messages' readings fall on (the partitions they need)."""
    epoch_days = {int(r.ts // 86400) for m in messages for r in m.readings}
    return {dt.date(1970, 1, 1) + dt.timedelta(days=d) for d in epoch_days}


class PostgresStore:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: asyncpg.Connection | None = None
        self._days: set[dt.date] = set()  # partitions known to exist
        self._lock = asyncio.Lock()  # one operation at a time on the connection

    async def open(self) -> None:
        await self._connection()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        try:
            conn = await asyncpg.connect(self.dsn, timeout=30)
            await prepare(conn)
        except DB_ERRORS as exc:
            raise StoreError(f"postgresql: {exc}") from None
        self._conn = conn
        return conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def write(self, messages: Sequence[Decoded], rejected: Sequence[Rejected],
                    replayed: Sequence[int] = ()) -> WriteReport:  # fmt: skip
        async def write(conn: asyncpg.Connection) -> WriteReport:
            await self._partitions(conn, days_of(messages))
            async with conn.transaction():
                report = await self._transaction(conn, messages, rejected)
                if replayed:
                    await conn.execute("UPDATE rejected SET replayed = now() "
                                       "WHERE id = ANY($1::bigint[])", list(replayed))  # fmt: skip
                return report

        return await self._do(write)

    async def _do(self, operation: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """One operation at a time on the connection; a failure closes it (the next call
        connects again) and becomes a StoreError."""
        async with self._lock:
            try:
                return await operation(await self._connection())
            except DB_ERRORS as exc:
                if self._conn is not None and not self._conn.is_closed():
                    await self._conn.close()
                self._conn = None
                raise StoreError(f"postgresql: {exc}") from None

    async def bindings(self, key_ids: Collection[str]) -> dict[str, Binding]:
        async def read(conn: asyncpg.Connection) -> dict[str, Binding]:
            return await _bindings(conn, key_ids)

        return await self._do(read) if key_ids else {}

    async def claim(self, claims: Sequence[Binding]) -> dict[str, Binding]:
        async def claim(conn: asyncpg.Connection) -> dict[str, Binding]:
            try:
                async with conn.transaction():
                    await _insert_claims(conn, claims)
                    held = await _bindings(conn, [c.key_id for c in claims])  # a new snapshot
                    if not claimed(held, claims):
                        raise _Lost  # all or none: roll back what was inserted
                    return held
            except _Lost:
                return await _bindings(conn, [c.key_id for c in claims])

        return await self._do(claim) if claims else {}

    async def keys(self) -> list[Binding]:
        async def read(conn: asyncpg.Connection) -> list[Binding]:
            rows = await conn.fetch(f"SELECT {BINDING_COLUMNS} FROM key_bindings "
                                    "ORDER BY gateway, bound, key_id")  # fmt: skip
            return [_binding(r) for r in rows]

        return await self._do(read)

    async def retire(self, key_id: str, reason: str | None,
                     force: bool) -> tuple[Retire, Binding | None]:  # fmt: skip
        async def retire(conn: asyncpg.Connection) -> tuple[Retire, Binding | None]:
            async with conn.transaction():
                return await _retire(conn, key_id, reason, force)

        return await self._do(retire)

    async def retirements(self, known: int) -> tuple[int, list[Binding]]:
        async def read(conn: asyncpg.Connection) -> tuple[int, list[Binding]]:
            count = await conn.fetchval(
                "SELECT count(*) FROM key_bindings WHERE retired IS NOT NULL"
            )
            if count == known:
                return count, []
            rows = await conn.fetch(f"SELECT {BINDING_COLUMNS} FROM key_bindings "
                                    "WHERE retired IS NOT NULL")  # fmt: skip
            return len(rows), [_binding(r) for r in rows]

        return await self._do(read)

    async def kept(self, after: int, limit: int) -> list[Kept]:
        async def read(conn: asyncpg.Connection) -> list[Kept]:
            rows = await conn.fetch(
                "SELECT id, topic, reason, payload FROM rejected WHERE id > $1 AND payload "
                "IS NOT NULL AND replayed IS NULL ORDER BY id LIMIT $2", after, limit)  # fmt: skip
            return [Kept(r["id"], r["topic"], r["reason"], bytes(r["payload"])) for r in rows]

        return await self._do(read)

    async def rejections(self) -> list[RejectedCount]:
        async def read(conn: asyncpg.Connection) -> list[RejectedCount]:
            rows = await conn.fetch(
                "SELECT reason, topic, count(*) FILTER (WHERE replayed IS NULL) AS waiting, "
                "count(*) FILTER (WHERE replayed IS NULL AND payload IS NOT NULL) AS kept, "
                "count(*) FILTER (WHERE replayed IS NOT NULL) AS replayed "
                "FROM rejected GROUP BY reason, topic ORDER BY reason, topic")  # fmt: skip
            return [RejectedCount(r["reason"], r["topic"], r["waiting"], r["kept"],
                                  r["replayed"]) for r in rows]  # fmt: skip

        return await self._do(read)

    async def _partitions(self, conn: asyncpg.Connection, days: set[dt.date]) -> None:
        missing = sorted(days - self._days)
        if not missing:
            return
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
            for day in missing:
                start = dt.datetime.combine(day, dt.time(), UTC)
                end = start + dt.timedelta(days=1)
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF readings "
                    f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
                )
        self._days.update(missing)

    async def _transaction(self, conn: asyncpg.Connection, messages: Sequence[Decoded],
                           rejected: Sequence[Rejected]) -> WriteReport:  # fmt: skip
        report = WriteReport(rejected=len(rejected))
        groups = by_gateway(messages)
        candidates = [m for group in groups.values() for m in group]
        fresh: list[Decoded] = []
        if groups:
            await conn.execute(
                "INSERT INTO gateways (gateway, site) SELECT * FROM unnest($1::text[], "
                "$2::text[]) ON CONFLICT DO NOTHING",
                list(groups),
                [g[0].site for g in groups.values()],
            )
            highs = {r["gateway"]: r["high"] for r in await conn.fetch(
                "SELECT gateway, high FROM gateways WHERE gateway = ANY($1::text[]) "
                "ORDER BY gateway FOR UPDATE", list(groups))}  # fmt: skip
            stored = await conn.fetch(
                "INSERT INTO messages (gateway, seq, site, kind, ts, historical, entries) "
                "SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], "
                "$5::timestamptz[], $6::boolean[], $7::integer[]) "
                "ON CONFLICT DO NOTHING RETURNING gateway, seq",
                [m.gateway for m in candidates],
                [m.seq for m in candidates],
                [m.site for m in candidates],
                [m.kind for m in candidates],
                [when(m.ts) for m in candidates],
                [m.historical for m in candidates],
                [len(m.readings) + len(m.events) + len(m.results) for m in candidates],
            )
            new = {(r["gateway"], r["seq"]) for r in stored}
            fresh = [m for m in candidates if (m.gateway, m.seq) in new]
            await self._advance(conn, groups, highs, fresh, report)
        report.messages = len(fresh)
        report.duplicates = sum(m.sequenced for m in messages) - len(fresh)
        for table, columns, rows in (
            ("readings", READING_COLUMNS, reading_rows(fresh)),
            ("events", EVENT_COLUMNS, event_rows(fresh)),
            ("results", RESULT_COLUMNS, result_rows(fresh)),
        ):
            if rows:
                await conn.copy_records_to_table(table, records=_timed(rows), columns=columns)
            setattr(report, table, len(rows))
        for m in latest_states(messages):
            await conn.execute(
                "INSERT INTO gateways (gateway, site, state_ts, state, key_id) "
                "VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT (gateway) DO UPDATE SET "
                "site = excluded.site, state_ts = excluded.state_ts, state = excluded.state, "
                "key_id = excluded.key_id WHERE gateways.state_ts IS NULL "
                "OR gateways.state_ts <= excluded.state_ts",
                m.gateway,
                m.site,
                when(m.ts),
                to_json(m.state),
                m.key_id,
            )
            report.states += 1
        if rejected:
            await conn.executemany(
                "INSERT INTO rejected (topic, reason, detail, payload) VALUES ($1, $2, $3, $4)",
                [(r.topic, r.reason, r.detail[:500], r.payload) for r in rejected],
            )
        return report

    async def _advance(self, conn: asyncpg.Connection, groups: dict[str, list[Decoded]],
                       highs: dict[str, Any], fresh: list[Decoded],
                       report: WriteReport) -> None:  # fmt: skip
        seqs: dict[str, list[int]] = {}
        told: dict[str, list[Range]] = {}
        for m in fresh:
            seqs.setdefault(m.gateway, []).append(m.seq)
            if m.accounted:
                told.setdefault(m.gateway, []).extend(m.accounted)
        touched = sorted(set(seqs) | set(told))
        if not touched:
            return
        holes: dict[str, list[Range]] = {}
        known: dict[str, list[Range]] = {}
        for table, into in (("holes", holes), ("accounted", known)):
            for r in await conn.fetch(
                f"SELECT gateway, first, last FROM {table} WHERE gateway = ANY($1::text[]) "
                "ORDER BY gateway, first", touched):  # fmt: skip
                into.setdefault(r["gateway"], []).append((r["first"], r["last"]))
        high_updates: list[tuple[str, int | None]] = []
        gone: list[tuple[str, int]] = []
        added: list[tuple[str, int, int]] = []
        accounted_now: dict[str, tuple[Range, ...]] = {}
        for gw in touched:
            before = SeqState(highs.get(gw), tuple(holes.get(gw, ())), tuple(known.get(gw, ())))
            change = advance(before, seqs.get(gw, ()), told.get(gw, ()))
            after = change.state
            high_updates.append((gw, after.high))
            deleted, inserted = stored_change(before, after)
            gone += [(gw, a) for a in deleted]
            added += [(gw, a, b) for a, b in inserted]
            if after.accounted != before.accounted:
                accounted_now[gw] = after.accounted
            report.opened += [(gw, hole) for hole in change.opened]
            report.closed += change.closed
        await conn.execute(
            "UPDATE gateways g SET high = u.high FROM unnest($1::text[], $2::bigint[]) "
            "AS u(gateway, high) WHERE g.gateway = u.gateway",
            [g for g, _ in high_updates],
            [h for _, h in high_updates],
        )
        if gone:
            await conn.execute(
                "DELETE FROM holes h USING unnest($1::text[], $2::bigint[]) AS d(gateway, first) "
                "WHERE h.gateway = d.gateway AND h.first = d.first",
                [g for g, _ in gone],
                [a for _, a in gone],
            )
        if added:
            await conn.execute(
                "INSERT INTO holes (gateway, first, last) SELECT * FROM unnest($1::text[], "
                "$2::bigint[], $3::bigint[])",
                [g for g, _, _ in added],
                [a for _, a, _ in added],
                [b for _, _, b in added],
            )
        for gw, ranges in accounted_now.items():
            await conn.execute("DELETE FROM accounted WHERE gateway = $1", gw)
            await conn.executemany("INSERT INTO accounted VALUES ($1, $2, $3)",
                                   [(gw, a, b) for a, b in ranges])  # fmt: skip

    async def holes(self) -> list[Hole]:
        async with self._lock:
            return await self._holes()

    async def _holes(self) -> list[Hole]:
        try:
            conn = await self._connection()
            rows = await conn.fetch(
                "SELECT gateway, first, last FROM holes ORDER BY gateway, first"
            )
        except DB_ERRORS as exc:
            raise StoreError(f"postgresql: {exc}") from None
        return [Hole(r["gateway"], r["first"], r["last"]) for r in rows]

    async def totals(self) -> Totals:
        async with self._lock:
            return await self._totals()

    async def _totals(self) -> Totals:
        try:
            conn = await self._connection()
            row = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM messages) AS messages, "
                "(SELECT count(*) FROM readings) AS readings, "
                "(SELECT count(*) FROM holes) AS holes, "
                "(SELECT coalesce(sum(last - first + 1), 0) FROM holes) AS missing"
            )
        except DB_ERRORS as exc:
            raise StoreError(f"postgresql: {exc}") from None
        return Totals(row["messages"], row["readings"], row["holes"], int(row["missing"]))
