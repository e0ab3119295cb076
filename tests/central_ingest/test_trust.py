"""Key bindings and rotations live in the store (SQLite and PostgreSQL), so two verifiers
that share it — two workers, or one before and after a restart — agree: each here has a
verifier and a store connection of its own, as a worker process has."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from cityedge.central.ingest.decode import Decoded, Decoder, Rejected
from cityedge.central.ingest.store.base import Store
from cityedge.central.ingest.store.select import open_store
from cityedge.central.ingest.trust import SharedTrust
from cityedge.central.verifier import Verifier
from cityedge.protocol.keys import SigningKey
from tests.central_ingest.helpers import rotated_state, telemetry

OLD, NEW, SHARED, OTHER = (SigningKey.from_seed(bytes([n]) * 32) for n in (41, 42, 43, 44))
TS = 1_790_000_000.0


Workers = Callable[..., Awaitable[SharedTrust]]


@pytest.fixture
async def workers(store_url: str) -> AsyncIterator[Workers]:
    """Make 'workers': a verifier given `keys` (GATEWAY=KEY when bound) over a store
    connection of its own, seeded as a starting worker is."""
    opened: list[Store] = []

    async def make(*keys: SigningKey, bound: dict[str, str] | None = None) -> SharedTrust:
        verifier = Verifier({k.key_id: k.public_key for k in keys}, bindings=bound or {})
        store = open_store(store_url)
        await store.open()
        opened.append(store)
        trust = SharedTrust(Decoder(verifier), store)
        await trust.seed()
        return trust

    yield make
    for store in opened:
        await store.close()


async def _bindings(store_url: str) -> dict[str, str]:
    sql = "SELECT key_id, gateway FROM key_bindings"
    if store_url.startswith("sqlite:"):
        with sqlite3.connect(store_url.removeprefix("sqlite:")) as db:
            return dict(db.execute(sql).fetchall())
    conn = await asyncpg.connect(store_url)
    try:
        return {r[0]: r[1] for r in await conn.fetch(sql)}
    finally:
        await conn.close()


async def test_a_rotation_one_worker_learned_is_honoured_by_the_other(
    workers: Workers, store_url: str
) -> None:
    a = await workers(OLD, bound={OLD.key_id: "gw-rot"})
    b = await workers(OLD, bound={OLD.key_id: "gw-rot"})
    gw = telemetry(NEW, "gw-rot")
    first = gw.telemetry(TS)[1]
    (before,) = await b.decode([(gw.topic, first)])
    assert isinstance(before, Rejected) and before.reason == "unknown-key"  # nobody knows it yet
    (state,) = await a.decode([rotated_state("gw-rot", OLD, NEW)])
    assert isinstance(state, Decoded) and state.key_id == NEW.key_id
    later = [(gw.topic, gw.telemetry(TS + i)[1]) for i in range(1, 4)]
    assert all(isinstance(o, Decoded) for o in await b.decode([(gw.topic, first), *later]))
    assert (await _bindings(store_url))[NEW.key_id] == "gw-rot"
    restarted = await workers(OLD, bound={OLD.key_id: "gw-rot"})
    (again,) = await restarted.decode([(gw.topic, gw.telemetry(TS + 9)[1])])
    assert isinstance(again, Decoded)


async def test_a_binding_learned_from_traffic_survives_a_restart(
    workers: Workers,
) -> None:
    a = await workers(SHARED)
    owner, thief = telemetry(SHARED, "gw-a"), telemetry(SHARED, "gw-b")
    (first,) = await a.decode([(owner.topic, owner.telemetry(TS)[1])])
    assert isinstance(first, Decoded)
    restarted = await workers(SHARED)
    (stolen,) = await restarted.decode([(thief.topic, thief.telemetry(TS)[1])])
    assert isinstance(stolen, Rejected) and stolen.reason == "wrong-gateway"
    assert "belongs to gateway 'gw-a'" in stolen.detail


async def test_two_workers_racing_for_one_key_end_with_one_binding(
    workers: Workers, store_url: str
) -> None:
    """Both verifiers bind the key in memory before either claims it (asyncio runs each
    `decode` up to its first await): the store decides, the loser verifies again."""
    a = await workers(SHARED)
    b = await workers(SHARED)
    gw_a, gw_b = telemetry(SHARED, "gw-a"), telemetry(SHARED, "gw-b")
    (one,), (two,) = await asyncio.gather(
        a.decode([(gw_a.topic, gw_a.telemetry(TS)[1])]),
        b.decode([(gw_b.topic, gw_b.telemetry(TS)[1])]),
    )
    outcomes = sorted([one, two], key=lambda o: isinstance(o, Rejected))
    won, lost = outcomes
    assert isinstance(won, Decoded) and isinstance(lost, Rejected), outcomes
    assert lost.reason == "wrong-gateway"
    assert f"belongs to gateway {won.gateway!r}" in lost.detail
    assert await _bindings(store_url) == {SHARED.key_id: won.gateway}
    # Both workers now agree, whichever gateway sends next.
    for trust in (a, b):
        loser = gw_b if won.gateway == "gw-a" else gw_a
        (next_one,) = await trust.decode([(loser.topic, loser.telemetry(TS + 1)[1])])
        assert isinstance(next_one, Rejected) and next_one.reason == "wrong-gateway"


async def test_a_rotation_to_a_key_another_gateway_holds_binds_nothing(
    workers: Workers, store_url: str
) -> None:
    """gw-2 claimed NEW first (learned from its traffic by another worker); gw-1's
    announcement of NEW is refused and its old key is not bound by the attempt."""
    other = await workers(NEW)
    gw2 = telemetry(NEW, "gw-2")
    assert isinstance((await other.decode([(gw2.topic, gw2.telemetry(TS)[1])]))[0], Decoded)
    a = await workers(OLD)
    (state,) = await a.decode([rotated_state("gw-1", OLD, NEW)])
    assert isinstance(state, Rejected) and state.reason == "wrong-gateway"
    assert await _bindings(store_url) == {NEW.key_id: "gw-2"}
    assert a.verifier.owner(OLD.key_id) is None


async def test_a_given_binding_the_store_contradicts_is_kept_and_the_others_are_seeded(
    workers: Workers, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The store binds SHARED to gw-a (learned from traffic); a worker started with
    gw-b=SHARED and gw-1=OLD keeps its operator's word for SHARED, says so, and still
    seeds gw-1=OLD."""
    a = await workers(SHARED)
    gw_a = telemetry(SHARED, "gw-a")
    assert isinstance((await a.decode([(gw_a.topic, gw_a.telemetry(TS)[1])]))[0], Decoded)
    b = await workers(SHARED, OLD, bound={SHARED.key_id: "gw-b", OLD.key_id: "gw-1"})
    assert "ingest.binding_conflict" in capsys.readouterr().out
    assert await _bindings(store_url) == {SHARED.key_id: "gw-a", OLD.key_id: "gw-1"}
    assert b.verifier.owner(SHARED.key_id) == "gw-b"


async def _retire(store_url: str, key_id: str) -> None:
    """What `cityedge central keys retire` does, on a connection of its own."""
    store = open_store(store_url)
    await store.open()
    try:
        done, _ = await store.retire(key_id, "leaked", force=False)
        assert done == "retired"
    finally:
        await store.close()


async def test_a_retired_key_is_refused_by_every_running_worker_from_its_next_batch(
    workers: Workers, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both workers trust OLD (given) and NEW (a rotation only `a` saw); OLD is retired
    while they run: in each, a message OLD signs is refused `unknown-key` (retired-key)
    and kept whole, NEW still passes; a worker started later, OLD given again, agrees."""
    a = await workers(OLD, bound={OLD.key_id: "gw-rot"})
    b = await workers(OLD, bound={OLD.key_id: "gw-rot"})
    assert isinstance((await a.decode([rotated_state("gw-rot", OLD, NEW)]))[0], Decoded)
    leaked, rotated = telemetry(OLD, "gw-rot", 1), telemetry(NEW, "gw-rot", 100)
    (before,) = await b.decode([(leaked.topic, leaked.telemetry(TS)[1])])
    assert isinstance(before, Decoded)  # trusted until retired
    await _retire(store_url, OLD.key_id)
    restarted = await workers(OLD, bound={OLD.key_id: "gw-rot"})
    for trust in (a, b, restarted):
        forged = leaked.telemetry(TS + 1)[1]
        refused, passed = await trust.decode(
            [(leaked.topic, forged), (rotated.topic, rotated.telemetry(TS + 1)[1])]
        )
        assert isinstance(refused, Rejected) and refused.reason == "unknown-key", refused
        assert refused.detail == f"retired-key: key {OLD.key_id} was retired"
        assert refused.payload == forged  # kept, like every unknown-key refusal
        assert isinstance(passed, Decoded) and passed.key_id == NEW.key_id
        # Nor can the thief rotate gw-rot to a key of its own with the retired key.
        (hijack,) = await trust.decode([rotated_state("gw-rot", OLD, OTHER)])
        assert isinstance(hijack, Rejected) and hijack.reason == "unknown-key", hijack
        assert OTHER.key_id not in trust.verifier.gateway_keys
    logged = capsys.readouterr().out
    assert logged.count("ingest.key_retired_but_given") == 3  # each was given OLD
    assert await _bindings(store_url) == {OLD.key_id: "gw-rot", NEW.key_id: "gw-rot"}  # no OTHER


async def test_an_announcement_cannot_bring_a_retired_key_back_in_another_worker(
    workers: Workers, store_url: str
) -> None:
    a = await workers(OLD, bound={OLD.key_id: "gw-rot"})
    assert isinstance((await a.decode([rotated_state("gw-rot", OLD, NEW)]))[0], Decoded)
    await _retire(store_url, NEW.key_id)
    b = await workers(OLD, bound={OLD.key_id: "gw-rot"})
    (again,) = await b.decode([rotated_state("gw-rot", OLD, NEW)])
    assert isinstance(again, Rejected) and again.reason == "wrong-gateway"
    assert "is retired" in again.detail
    gw = telemetry(NEW, "gw-rot")
    (telemetry_new,) = await a.decode([(gw.topic, gw.telemetry(TS)[1])])
    assert isinstance(telemetry_new, Rejected) and telemetry_new.detail.startswith("retired-key:")
