"""Two `cityedge central ingest` workers competing on one NATS JetStream consumer, with
one PostgreSQL database, agree on keys because the keys live in the database:

- a rotation one worker learned (a state message carrying the announcement) is
  honoured by the other, which never saw that state, and by the first after a restart;
- a key given without its gateway and used by two gateways at once is bound to one of
  them only; the other's message is refused `wrong-gateway`, and still is after both
  workers were killed -9 and started again;
- a key retired with `cityedge central keys retire` while both run is refused by them
  (`unknown-key`, retired-key, kept), its gateway's new key still passes, and neither a
  worker given it again nor a replay brings it back.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

from cityedge.protocol.announcements import seal_key_announcement
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.sealing import seal_object
from cityedge.protocol.topics import topic_for
from cityedge.street.fleet import SimulatedGateway, publish_reliably
from tests.central_ingest.engines import NatsNode
from tests.central_ingest.helpers import rotated_state, telemetry
from tests.central_ingest.workers import Worker, pg_count, wait_until
from tests.support.agent_process import cityedge

OLD, NEW, SHARED, LEAKED, FRESH = (
    SigningKey.from_seed(bytes([n]) * 32) for n in (51, 52, 53, 54, 55)
)
SITE = "town-01"
TS = 1_790_000_000.0


async def test_two_workers_share_rotations_and_bindings_through_postgresql(
    tmp_path: Path, pg_dsn: str, prefix: str
) -> None:
    node = NatsNode(tmp_path / "nats")
    node.start()
    common = ["--source", node.url, "--prefix", prefix, "--log-level", "warning"]
    args = [*common, "--store", pg_dsn, "--max-batch", "20", "--prefetch", "50",
            "--trust", f"gw-rot={OLD.public_text()}", "--trust", SHARED.public_text()]  # fmt: skip
    a = Worker(tmp_path / "a.log", *args)
    b = Worker(tmp_path / "b.log", *args)

    async def publish(messages: list[tuple[str, bytes]], who: str) -> None:
        await publish_reliably("127.0.0.1", node.mqtt_port, messages, client_id=who)

    def stored(gateway: str, n: int) -> object:
        sql = f"SELECT count(*) FROM messages WHERE gateway = '{gateway}'"
        return lambda: _at_least(pg_dsn, sql, n)

    try:
        declared = cityedge("central", "ingest", *common, "--declare-only")
        assert declared.returncode == 0, declared.stderr
        a.start()
        await a.ready()

        # gw-rot rotated OLD -> NEW: only worker a is running to take its state.
        announcement = seal_key_announcement(OLD, NEW.public_key, gateway="gw-rot", ts=TS)
        data = {"status": "online", "key_announcements": [announcement]}
        state = seal_object(NEW, gateway="gw-rot", site=SITE, kind="state", seq=0, ts=TS,
                            data=data)  # fmt: skip
        await publish([(topic_for(prefix, SITE, "gw-rot", "state"), state)], "gw-rot")
        await wait_until(lambda: _at_least(pg_dsn, "SELECT count(*) FROM gateways WHERE "
                                           "gateway = 'gw-rot' AND state IS NOT NULL", 1),
                         60, "gw-rot's rotated state stored")  # fmt: skip
        b.start()
        await b.ready()
        assert a.stop() == 0  # after its batch was acknowledged: b never sees the state
        rot = SimulatedGateway(NEW, "gw-rot", SITE, lampposts=2, prefix=prefix)
        await publish([(rot.topic, rot.telemetry(TS + i)[1]) for i in range(10)], "gw-rot")
        await wait_until(stored("gw-rot", 10), 60, "b stored 10 messages signed by NEW")
        a.start()  # a restarted: what it learned before is gone from its memory
        await a.ready()
        assert b.stop() == 0
        await publish([(rot.topic, rot.telemetry(TS + 10 + i)[1]) for i in range(10)], "gw-rot")
        await wait_until(stored("gw-rot", 20), 60, "restarted a stored 10 more")
        assert "key_rotated" not in b.log.read_text()  # b learned it from the database only
        assert await pg_count(pg_dsn, "SELECT count(*) FROM rejected") == 0

        # One bare key, two gateways using it at once, both workers running.
        b.start()
        await b.ready()
        gw_a = SimulatedGateway(SHARED, "gw-a", SITE, lampposts=2, prefix=prefix)
        gw_b = SimulatedGateway(SHARED, "gw-b", SITE, lampposts=2, prefix=prefix)
        await publish([(gw_a.topic, gw_a.telemetry(TS)[1]),
                       (gw_b.topic, gw_b.telemetry(TS)[1])], "pair")  # fmt: skip
        settled = ("SELECT (SELECT count(*) FROM messages WHERE gateway IN ('gw-a', 'gw-b')) "
                   "+ (SELECT count(*) FROM rejected)")  # fmt: skip
        await wait_until(lambda: _at_least(pg_dsn, settled, 2), 60, "both messages settled")
        owner = await _one(pg_dsn, f"SELECT gateway FROM key_bindings WHERE key_id = "
                                   f"'{SHARED.key_id}'")  # fmt: skip
        other = "gw-b" if owner == "gw-a" else "gw-a"
        assert await pg_count(pg_dsn, f"SELECT count(*) FROM messages WHERE gateway = "
                                    f"'{owner}'") == 1  # fmt: skip
        assert await _rejected(pg_dsn) == [("wrong-gateway", topic_for(prefix, SITE, other,
                                                                       "telemetry"))]  # fmt: skip

        # Both killed -9 and started again: the binding is the database's, not theirs.
        a.kill9()
        b.kill9()
        a.start()
        b.start()
        await a.ready()
        await b.ready()
        senders = {"gw-a": gw_a, "gw-b": gw_b}
        again = [(senders[g].topic, senders[g].telemetry(TS + 1)[1]) for g in (other, owner)]
        await publish(again, "pair")
        await wait_until(stored(owner, 2), 60, f"{owner}'s second message stored")
        await wait_until(lambda: _at_least(pg_dsn, "SELECT count(*) FROM rejected", 2), 60,
                         f"{other}'s second message refused")  # fmt: skip
        assert [r for r, _ in await _rejected(pg_dsn)] == ["wrong-gateway"] * 2
        assert await pg_count(pg_dsn, f"SELECT count(*) FROM messages WHERE gateway = "
                                    f"'{other}'") == 0  # fmt: skip
    finally:
        codes = (a.stop(), b.stop())
        node.close()
    assert codes == (0, 0), (a.log.read_text()[-2000:], b.log.read_text()[-2000:])


async def test_a_key_retired_while_two_workers_run_is_refused_and_kept(
    tmp_path: Path, pg_dsn: str, prefix: str
) -> None:
    node = NatsNode(tmp_path / "nats")
    node.start()
    common = ["--source", node.url, "--prefix", prefix, "--log-level", "info"]
    args = [*common, "--store", pg_dsn, "--max-batch", "5", "--prefetch", "20",
            "--trust", f"gw-leak={LEAKED.public_text()}"]  # fmt: skip
    a = Worker(tmp_path / "a.log", *args)
    b = Worker(tmp_path / "b.log", *args)
    try:
        assert cityedge("central", "ingest", *common, "--declare-only").returncode == 0
        a.start()
        b.start()
        await a.ready()
        await b.ready()
        # gw-leak rotates LEAKED -> FRESH; the two workers are running before and after.
        await publish_reliably("127.0.0.1", node.mqtt_port,
                               [rotated_state("gw-leak", LEAKED, FRESH, prefix)],
                               client_id="gw-leak")  # fmt: skip
        await wait_until(lambda: _at_least(pg_dsn, "SELECT count(*) FROM key_bindings "
                                           f"WHERE key_id = '{FRESH.key_id}'", 1),
                         60, "the rotation to FRESH stored")  # fmt: skip
        retired = cityedge("central", "keys", "retire", LEAKED.key_id, "--store", pg_dsn,
                           "--reason", "leaked")  # fmt: skip
        assert retired.returncode == 0, retired.stderr

        # After the retirement: ten messages signed by the thief's copy of LEAKED (seq
        # 101..110) between ten of the gateway's own, signed by FRESH (seq 1..10).
        thief = telemetry(LEAKED, "gw-leak", 101, prefix)
        own = telemetry(FRESH, "gw-leak", 1, prefix)
        mixed = [m for i in range(10) for m in ((thief.topic, thief.telemetry(TS + i)[1]),
                                                (own.topic, own.telemetry(TS + i)[1]))]  # fmt: skip
        await publish_reliably("127.0.0.1", node.mqtt_port, mixed, client_id="gw-leak")
        await wait_until(lambda: _at_least(pg_dsn, "SELECT (SELECT count(*) FROM messages) + "
                                           "(SELECT count(*) FROM rejected)", 20),
                         60, "all 20 messages settled")  # fmt: skip
        assert await pg_count(pg_dsn, "SELECT count(*) FROM messages WHERE gateway = "
                                      "'gw-leak' AND seq BETWEEN 1 AND 10") == 10  # fmt: skip
        assert await pg_count(pg_dsn, "SELECT count(*) FROM messages WHERE seq > 100") == 0
        assert await pg_count(pg_dsn, "SELECT count(*) FROM rejected WHERE reason = "
                              "'unknown-key' AND payload IS NOT NULL AND detail = "
                              f"'retired-key: key {LEAKED.key_id} was retired'") == 10  # fmt: skip
        assert await pg_count(pg_dsn, "SELECT count(*) FROM rejected") == 10

        # A worker started again, LEAKED still in its --trust: the retirement wins.
        assert a.stop() == 0
        a.start()
        await a.ready()
        assert "ingest.key_retired_but_given" in a.log.read_text()
        # A replay with LEAKED given refuses the kept messages again.
        replay = cityedge("central", "rejected", "replay", "--store", pg_dsn, "--prefix", prefix,
                          "--trust", f"gw-leak={LEAKED.public_text()}")  # fmt: skip
        assert replay.returncode == 1, replay.stderr
        assert "still refused: 10 unknown-key" in replay.stdout
        assert f"retired-key: key {LEAKED.key_id}" in replay.stdout
    finally:
        codes = (a.stop(), b.stop())
        node.close()
    assert codes == (0, 0), (a.log.read_text()[-2000:], b.log.read_text()[-2000:])


async def _at_least(dsn: str, sql: str, n: int) -> bool:
    return await pg_count(dsn, sql) >= n


async def _one(dsn: str, sql: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.fetchval(sql))
    finally:
        await conn.close()


async def _rejected(dsn: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT reason, topic FROM rejected ORDER BY received")
        return [(r["reason"], r["topic"]) for r in rows]
    finally:
        await conn.close()
