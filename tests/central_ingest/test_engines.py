"""Through real engines started by the test: gateways publish at QoS 1 over MQTT
(project's sealing, resending whatever was not PUBACKed), two ingest workers compete
for one queue or consumer, one is killed -9 mid-stream and restarted, the engine is
killed -9 and restarted — and the database ends with every message once, no hole.

The engine kill also checks what its PUBACK means: everything acknowledged to a
gateway before the kill is still delivered after the restart (quorum queue; JetStream
file storage).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg

from cityedge.protocol.keys import SigningKey
from cityedge.street.fleet import SimulatedGateway, publish_reliably
from tests.central_ingest.engines import NatsNode, RabbitNode
from tests.central_ingest.helpers import fleet
from tests.central_ingest.outbox_gateway import OutboxGateway
from tests.central_ingest.workers import Worker, ledger, pg_count, trust_args, wait_until
from tests.support.agent_process import cityedge

GATEWAYS = 4
LAMPPOSTS = 10
PER_PHASE = 30  # messages per gateway and phase


async def _publish(gateways: list[SimulatedGateway], port: int, base_ts: float) -> None:
    async def one(gw: SimulatedGateway) -> None:
        messages = [(gw.topic, gw.telemetry(base_ts + i)[1]) for i in range(PER_PHASE)]
        await publish_reliably("127.0.0.1", port, messages, client_id=f"{gw.site}-{gw.gateway}",
                               window=8, deadline=150)  # fmt: skip

    await asyncio.gather(*(one(gw) for gw in gateways))


async def _scenario(tmp_path: Path, pg_dsn: str, prefix: str, source: str, mqtt_port: int,
                    restart_engine: Callable[[], None]) -> None:  # fmt: skip
    gateways = fleet(GATEWAYS, LAMPPOSTS, prefix=prefix)
    real = OutboxGateway(tmp_path / "outbox.db", SigningKey.from_seed(bytes([99]) * 32),
                         gateway="gw-outbox", site="town-02", prefix=prefix)  # fmt: skip
    common = ["--source", source, "--prefix", prefix, "--log-level", "warning"]
    declared = cityedge("central", "ingest", *common, "--declare-only")
    assert declared.returncode == 0, declared.stderr
    args = [*common, "--store", pg_dsn, "--max-batch", "20", "--prefetch", "50",
            *trust_args(gateways), "--trust", f"gw-outbox={real.key.public_text()}"]  # fmt: skip
    a = Worker(tmp_path / "a.log", *args).start()
    b = Worker(tmp_path / "b.log", *args).start()
    try:
        real.take(300, 1_790_000_000.0)
        phase1 = asyncio.gather(_publish(gateways, mqtt_port, 1_790_000_000.0),
                                real.drain("127.0.0.1", mqtt_port))  # fmt: skip
        await wait_until(lambda: _stored_at_least(pg_dsn, GATEWAYS * PER_PHASE // 4), 90,
                         "a quarter of phase 1 stored")  # fmt: skip
        a.kill9()  # mid-stream: its unacknowledged batch goes to b or comes back to it
        a.start()
        await a.ready()
        await phase1
        # An ingest outage: what the gateways publish now lives only in the engine...
        a.kill9()
        b.kill9()
        real.take(300, 1_790_100_000.0)
        await asyncio.gather(_publish(gateways, mqtt_port, 1_790_100_000.0),
                             real.drain("127.0.0.1", mqtt_port))  # fmt: skip
        # ...and the engine dies hard right after its last PUBACK.
        restart_engine()
        a.start()
        b.start()
        simulated = GATEWAYS * PER_PHASE * 2
        total = simulated + real.outbox.last_seq()  # the outbox numbers from 1, no gap
        try:
            await wait_until(lambda: _stored_at_least(pg_dsn, total), 120, f"{total} messages")
        except AssertionError:
            per = await _per_gateway(pg_dsn)
            raise AssertionError(f"{total} messages expected, stored: {per}") from None
        book = await ledger(pg_dsn)
        assert book["messages"] == total
        assert book["readings"] == simulated * LAMPPOSTS * 4 + real.readings
        assert book["readings"] + await pg_count(pg_dsn, "SELECT count(*) FROM events") == (
            book["entries"])  # fmt: skip
        assert await pg_count(pg_dsn, "SELECT count(*) FROM messages WHERE gateway = "
                              "'gw-outbox'") == real.outbox.last_seq()  # fmt: skip
        assert book["twice"] == 0
        assert book["holes"] == 0
    finally:
        codes = (a.stop(), b.stop())
        real.close()
    assert codes == (0, 0), (a.log.read_text()[-2000:], b.log.read_text()[-2000:])


async def _per_gateway(dsn: str) -> list[tuple[str, int, int, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT gateway, count(*), min(seq), max(seq) FROM messages "
                                "GROUP BY gateway ORDER BY gateway")  # fmt: skip
        return [tuple(r) for r in rows]
    finally:
        await conn.close()


async def _stored_at_least(dsn: str, n: int) -> bool:
    return await pg_count(dsn, "SELECT count(*) FROM messages") >= n


async def test_rabbitmq_quorum_queue_two_workers_kill9_and_engine_kill(
    tmp_path: Path, pg_dsn: str, prefix: str
) -> None:
    node = RabbitNode(tmp_path / "rabbit")
    node.start()
    try:

        def restart() -> None:
            node.kill()
            time.sleep(0.5)
            node.start()

        await _scenario(tmp_path, pg_dsn, prefix, node.amqp_url, node.mqtt_port, restart)
    finally:
        node.close()


async def test_nats_jetstream_two_workers_kill9_and_engine_kill(
    tmp_path: Path, pg_dsn: str, prefix: str
) -> None:
    node = NatsNode(tmp_path / "nats")
    node.start()
    try:

        def restart() -> None:
            node.kill()
            node.start()

        await _scenario(tmp_path, pg_dsn, prefix, node.url, node.mqtt_port, restart)
    finally:
        node.close()
