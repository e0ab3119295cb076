"""Both stores, same semantics: (gateway, seq) stored once, holes in the database,
several writers at once agreeing, rejected messages recorded."""

from __future__ import annotations

import asyncio
import random
import sqlite3

import asyncpg

from cityedge.central.ingest.decode import Rejected
from cityedge.central.ingest.store.select import open_store
from cityedge.protocol.sealing import seal_object
from cityedge.protocol.topics import DEFAULT_PREFIX, topic_for
from tests.central_ingest.helpers import decoded, decoder_for, fleet, sealed


async def test_a_message_is_stored_once_whatever_comes_again(store_url: str) -> None:
    (gw,) = fleet(1, lampposts=5)
    messages = decoded(decoder_for([gw]), gw, sealed(gw, 6))
    store = open_store(store_url)
    await store.open()
    try:
        first = await store.write(messages[:4] + messages[:2], [])
        assert (first.messages, first.duplicates, first.readings) == (4, 2, 4 * 5 * 4)
        again = await store.write(messages, [])
        assert (again.messages, again.duplicates) == (2, 4)
        totals = await store.totals()
        assert (totals.messages, totals.readings, totals.holes) == (6, 6 * 20, 0)
    finally:
        await store.close()


async def test_holes_open_and_close_as_late_messages_arrive(store_url: str) -> None:
    (gw,) = fleet(1)
    messages = decoded(decoder_for([gw]), gw, sealed(gw, 10))
    store = open_store(store_url)
    await store.open()
    try:
        report = await store.write([messages[0], messages[4], messages[9]], [])
        assert report.opened == [("gw-000", (2, 4)), ("gw-000", (6, 9))]
        assert [(h.first, h.last) for h in await store.holes()] == [(2, 4), (6, 9)]
        late = await store.write([messages[2], messages[6]], [])
        assert late.closed == 2
        assert [(h.first, h.last) for h in await store.holes()] == [(2, 2), (4, 4), (6, 6),
                                                                    (8, 9)]  # fmt: skip
        await store.write(messages, [])
        assert await store.holes() == []
        assert (await store.totals()).missing == 0
    finally:
        await store.close()


async def test_competing_writers_agree(store_url: str) -> None:
    """Three writers get overlapping, shuffled batches of five gateways' messages (as
    competing consumers get redeliveries): every message once, no hole left."""
    gateways = fleet(5)
    decoder = decoder_for(gateways)
    everything = [m for gw in gateways for m in decoded(decoder, gw, sealed(gw, 40))]
    rng = random.Random(7)
    stores = [open_store(store_url) for _ in range(3)]
    for store in stores:
        await store.open()
    try:

        async def worker(store_index: int) -> None:
            mine = [m for m in everything if rng.random() < 0.6]
            rng.shuffle(mine)
            for start in range(0, len(mine), 17):
                await stores[store_index].write(mine[start : start + 17], [])

        await asyncio.gather(*(worker(i) for i in range(3)))
        await stores[0].write(everything, [])  # what nobody took yet
        totals = await stores[0].totals()
        assert totals.messages == 5 * 40
        assert totals.readings == 5 * 40 * 3 * 4
        assert totals.holes == 0
    finally:
        for store in stores:
            await store.close()


async def _rows(store_url: str, sql: str) -> list[tuple[object, ...]]:
    if store_url.startswith("sqlite:"):
        with sqlite3.connect(store_url.removeprefix("sqlite:")) as db:
            return [tuple(r) for r in db.execute(sql).fetchall()]
    conn = await asyncpg.connect(store_url)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def test_rejections_are_recorded_and_an_unknown_keys_envelope_is_kept(
    store_url: str,
) -> None:
    known, stranger = fleet(2)
    decoder = decoder_for([known])
    unknown = decoder.decode(stranger.topic, sealed(stranger, 1)[0])
    forged = bytearray(sealed(known, 1)[0])
    forged[-1] ^= 1
    bad = decoder.decode(known.topic, bytes(forged))
    assert isinstance(unknown, Rejected) and isinstance(bad, Rejected)
    state = decoder.decode(
        topic_for(DEFAULT_PREFIX, known.site, known.gateway, "state"),
        seal_object(known.key, gateway=known.gateway, site=known.site, kind="state", seq=0,
                    ts=1_790_000_000.0, data={"status": "online"}),
    )  # fmt: skip
    store = open_store(store_url)
    await store.open()
    try:
        report = await store.write([state], [unknown, bad])  # type: ignore[list-item]
        assert (report.rejected, report.states, report.messages) == (2, 1, 0)
    finally:
        await store.close()
    rows = sorted(await _rows(store_url, "SELECT reason, payload IS NOT NULL FROM rejected"))
    assert rows == [("bad-signature", False), ("unknown-key", True)]
    assert await _rows(store_url, "SELECT gateway FROM gateways WHERE state IS NOT NULL") == [
        (known.gateway,)
    ]


async def test_a_database_from_before_replays_gets_its_columns(store_url: str) -> None:
    """`rejected` without `id`/`replayed` (made by an older ingest), with a kept row: the
    store adds the columns and the old row can be replayed."""
    old = ("CREATE TABLE rejected (received {t} NOT NULL, topic text NOT NULL, reason text "
           "NOT NULL, detail text NOT NULL, payload {b})")  # fmt: skip
    insert = "INSERT INTO rejected VALUES ({now}, 'a/b/c/d', 'unknown-key', 'x', {blob})"
    if store_url.startswith("sqlite:"):
        with sqlite3.connect(store_url.removeprefix("sqlite:")) as db:
            db.execute(old.format(t="REAL", b="BLOB"))
            db.execute(insert.format(now="1.0", blob="x'01'"))
    else:
        conn = await asyncpg.connect(store_url)
        try:
            await conn.execute(old.format(t="timestamptz", b="bytea"))
            await conn.execute(insert.format(now="now()", blob="'\\x01'::bytea"))
        finally:
            await conn.close()
    store = open_store(store_url)
    await store.open()
    try:
        (kept,) = await store.kept(0, 10)
        assert (kept.topic, kept.payload) == ("a/b/c/d", b"\x01")
        await store.write([], [], replayed=[kept.id])
        assert await store.kept(0, 10) == []
        (count,) = await store.rejections()
        assert (count.count, count.kept, count.replayed) == (0, 0, 1)
    finally:
        await store.close()
