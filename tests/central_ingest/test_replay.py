"""`cityedge central rejected replay` on both stores: what a gateway sent before its key
was trusted everywhere (kept whole, refused `unknown-key`) is verified again once the key
is given, stored once, and the hole it left closes; a second replay stores nothing. What
is still refused (a gateway nobody enrolled) stays, and the command says why."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import asyncpg

from cityedge.central.ingest.decode import Decoded, Decoder, Rejected
from cityedge.central.ingest.store.base import Store
from cityedge.central.ingest.store.select import open_store
from cityedge.central.ingest.trust import SharedTrust
from cityedge.central.verifier import Verifier
from cityedge.protocol.keys import SigningKey
from cityedge.street.broker import Broker
from cityedge.street.fleet import SimulatedGateway, publish_reliably
from tests.central_ingest.workers import Worker, wait_until
from tests.support.agent_process import cityedge

KNOWN, NEW, STRANGER = (SigningKey.from_seed(bytes([n]) * 32) for n in (61, 62, 63))
TS = 1_790_000_000.0
LAMPPOSTS = 2  # 4 points each: 8 readings a message


def _gateway(key: SigningKey, name: str) -> SimulatedGateway:
    return SimulatedGateway(key, name, "town-01", LAMPPOSTS)


async def _ingest(trust: SharedTrust, store: Store, batch: list[tuple[str, bytes]]) -> None:
    """What a worker does with a batch: verify through the shared trust, store in one go."""
    outcomes = await trust.decode(batch)
    decoded = [o for o in outcomes if isinstance(o, Decoded)]
    rejected = [o for o in outcomes if isinstance(o, Rejected)]
    await store.write(decoded, rejected)


def _worker(store: Store, *keys: SigningKey, names: tuple[str, ...]) -> SharedTrust:
    bound = {k.key_id: n for k, n in zip(keys, names, strict=True)}
    verifier = Verifier({k.key_id: k.public_key for k in keys}, bindings=bound)
    return SharedTrust(Decoder(verifier), store)


async def _ledger(store_url: str) -> dict[str, int]:
    queries = {
        "messages": "SELECT count(*) FROM messages WHERE gateway = 'gw-new'",
        "readings": "SELECT count(*) FROM readings WHERE gateway = 'gw-new'",
        "twice": "SELECT count(*) FROM (SELECT 1 FROM readings GROUP BY gateway, seq, device, "
        "point HAVING count(*) > 1) d",
        "holes": "SELECT count(*) FROM holes",
        "replayed": "SELECT count(*) FROM rejected WHERE replayed IS NOT NULL",
        "waiting": "SELECT count(*) FROM rejected WHERE replayed IS NULL",
    }
    if store_url.startswith("sqlite:"):
        with sqlite3.connect(store_url.removeprefix("sqlite:")) as db:
            return {k: db.execute(q).fetchone()[0] for k, q in queries.items()}
    conn = await asyncpg.connect(store_url)
    try:
        return {k: int(await conn.fetchval(q)) for k, q in queries.items()}
    finally:
        await conn.close()


async def test_replay_stores_what_an_unenrolled_gateway_sent_once(store_url: str) -> None:
    known, new, stranger = (_gateway(KNOWN, "gw-known"), _gateway(NEW, "gw-new"),
                            _gateway(STRANGER, "gw-stranger"))  # fmt: skip
    sent = [(new.topic, new.telemetry(TS + i)[1]) for i in range(10)]  # seqs 1..10
    forged = bytearray(known.telemetry(TS)[1])
    forged[-1] ^= 1
    store = open_store(store_url)
    await store.open()
    try:
        # gw-new's key reached one worker before the other (an enrolment being rolled out):
        # seqs 1 and 10 were stored, 2..9 (and 5 again, redelivered) refused.
        enrolled = _worker(store, KNOWN, NEW, names=("gw-known", "gw-new"))
        not_yet = _worker(store, KNOWN, names=("gw-known",))
        await _ingest(enrolled, store, [sent[0], sent[9]])
        await _ingest(not_yet, store, [*sent[1:9], sent[4], (known.topic, bytes(forged)),
                                       *((stranger.topic, stranger.telemetry(TS + i)[1])
                                         for i in range(2))])  # fmt: skip
        assert (await store.totals()).missing == 8
    finally:
        await store.close()

    listed = cityedge("central", "rejected", "list", "--store", store_url, "--json")
    assert listed.returncode == 0, listed.stderr
    counts = {(c["reason"], c["topic"]): (c["waiting"], c["kept"]) for c in
              json.loads(listed.stdout)}  # fmt: skip
    assert counts == {("unknown-key", new.topic): (9, 9), ("unknown-key", stranger.topic): (2, 2),
                      ("bad-signature", known.topic): (1, 0)}  # fmt: skip

    trust = ["--trust", f"gw-known={KNOWN.public_text()}", "--trust", f"gw-new={NEW.public_text()}"]
    first = cityedge("central", "rejected", "replay", "--store", store_url, *trust,
                     "--chunk", "4")  # fmt: skip
    assert first.returncode == 1, first.stderr  # gw-stranger is still nobody's
    assert ("replayed 9 of 11 kept messages: 8 stored (64 readings), 1 were there already; "
            "8 missing numbers filled") in first.stdout  # fmt: skip
    assert "still refused: 2 unknown-key (e.g. " + stranger.topic in first.stdout
    assert "replay: 11/11 rows, 9 replayed, 2 still refused" in first.stderr
    book = await _ledger(store_url)
    assert book == {"messages": 10, "readings": 10 * LAMPPOSTS * 4, "twice": 0, "holes": 0,
                    "replayed": 9, "waiting": 3}  # fmt: skip

    again = cityedge("central", "rejected", "replay", "--store", store_url, *trust)
    assert again.returncode == 1, again.stderr
    assert "replayed 0 of 2 kept messages: 0 stored (0 readings)" in again.stdout
    assert await _ledger(store_url) == book


async def test_nothing_to_replay_is_success(store_url: str) -> None:
    store = open_store(store_url)
    await store.open()
    await store.close()
    done = cityedge("central", "rejected", "replay", "--store", store_url,
                    "--trust", f"gw-known={KNOWN.public_text()}")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "replayed 0 of 0 kept messages" in done.stdout
    listed = cityedge("central", "rejected", "list", "--store", store_url)
    assert listed.returncode == 0 and listed.stdout.strip() == "no rejected messages"


async def test_a_worker_refuses_an_unenrolled_gateway_and_the_replay_stores_it(
    tmp_path: Path, prefix: str
) -> None:
    """End to end: a `central ingest` worker without gw-new's key refuses and keeps what
    it sends; the operator enrols the key and replays; everything is stored once."""
    gw = SimulatedGateway(NEW, "gw-new", "town-01", LAMPPOSTS, prefix=prefix)
    store_url = f"sqlite:{tmp_path / 'central.db'}"
    with Broker(workdir=tmp_path / "broker") as broker:
        worker = Worker(tmp_path / "ingest.log", "--source", broker.url, "--store", store_url,
                        "--prefix", prefix, "--log-level", "warning",
                        "--trust", f"gw-known={KNOWN.public_text()}").start()  # fmt: skip
        try:
            await worker.ready()

            async def subscribed() -> bool:
                return "cityedge-ingest" in broker.log_path.read_text()

            await wait_until(subscribed, 30, "ingest subscribed")
            sent = [(gw.topic, gw.telemetry(TS + i)[1]) for i in range(6)]
            await publish_reliably("127.0.0.1", broker.port, sent, client_id="gw-new")

            async def refused() -> bool:
                return (await _ledger(store_url))["waiting"] == 6

            await wait_until(refused, 60, "6 messages refused and kept")
        finally:
            assert worker.stop() == 0, worker.log.read_text()[-2000:]
    trust = ["--prefix", prefix, "--trust", f"gw-new={NEW.public_text()}"]
    done = cityedge("central", "rejected", "replay", "--store", store_url, *trust)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "replayed 6 of 6 kept messages: 6 stored (48 readings)" in done.stdout
    book = await _ledger(store_url)
    assert (book["messages"], book["readings"], book["holes"], book["waiting"]) == (6, 48, 0, 0)
