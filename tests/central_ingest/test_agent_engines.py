"""The real agent (`cityedge run`, simulated lampposts over Modbus) with
`[uplink] mqtt_version = "3.1.1"` through the MQTT side of a RabbitMQ node and of a
NATS JetStream server of the test's own, into `cityedge central ingest` with a
PostgreSQL database of its own. Ingest is killed -9 mid-stream and restarted, the
engine is killed and restarted; at the end every sequence number the agent ever
assigned is stored once and no hole is left. Through both, `central send` (which
learns the site from telemetry: RabbitMQ 3.10 delivers no retained state to a
wildcard) reaches the agent and gets its result, and a command queued while the
agent was stopped waits in its persistent 3.1.1 session and is answered after it
starts (the result stored by ingest).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiomqtt

from cityedge.central.commands import new_command
from cityedge.protocol.commands import seal_command
from cityedge.protocol.key_files import create_key
from cityedge.protocol.topics import DEFAULT_PREFIX, topic_for
from cityedge.street.modbus import ModbusStreet
from tests.central_ingest.agent_ledger import at_least, outbox_seqs, stored_seqs
from tests.central_ingest.engine_agent import engine_agent_config
from tests.central_ingest.engines import NatsNode, RabbitNode
from tests.central_ingest.workers import Worker, ledger, pg_count, wait_until
from tests.support.agent_process import AgentProcess, cityedge

READINGS = "SELECT count(*) FROM readings"
STEP = 200  # readings that must arrive after each disturbance (~2 s of the street)


async def _more(dsn: str, what: str) -> None:
    base = await pg_count(dsn, READINGS)
    await wait_until(lambda: at_least(dsn, READINGS, base + STEP), 60, what)


async def _scenario(
    tmp_path: Path, pg_dsn: str, source: str, mqtt_port: int,
    restart_engine: Callable[[], None], commands: bool,
) -> None:  # fmt: skip
    gateway_key = create_key(tmp_path / "state" / "keys" / "gateway.key")
    central = create_key(tmp_path / "central.key")
    common = ["--source", source, "--log-level", "warning"]
    declared = cityedge("central", "ingest", *common, "--declare-only")  # before any publish
    assert declared.returncode == 0, declared.stderr
    gw_trust = f"gw-test={gateway_key.public_text()}"
    ingest = Worker(tmp_path / "ingest.log", *common, "--store", pg_dsn, "--trust", gw_trust)
    ingest.start()
    try:
        async with ModbusStreet(lampposts=5, meters=0) as street:
            agent = AgentProcess(engine_agent_config(
                tmp_path, mqtt_port, street, trust=[central.public_text()],
                uplink={"reconnect_min": 0.2, "reconnect_max": 1.0}))  # fmt: skip
            agent.start()
            try:
                await _more(pg_dsn, "readings through the engine")
                ingest.kill9()  # mid-stream: the engine keeps what the agent goes on sending
                ingest.start()
                await ingest.ready()
                await _more(pg_dsn, "readings after ingest's kill -9")
                if commands:
                    await _send_ping(tmp_path, mqtt_port, gw_trust)
                restart_engine()
                await _more(pg_dsn, "readings after the engine's restart")
            finally:
                assert agent.stop() == 0, agent.logs()[-3000:]
            assert "uplink.up" in agent.logs()
            held, last = outbox_seqs(tmp_path / "state" / "outbox.db")
            delivered = set(range(1, last + 1)) - held

            async def all_delivered() -> bool:
                return delivered <= await stored_seqs(pg_dsn)

            await wait_until(all_delivered, 60, "every PUBACKed message stored")
            queued = None
            if commands:  # the agent is away: its 3.1.1 session keeps the command
                queued = new_command(central, "gw-test", "ping", ttl=600)
                await _publish_command(mqtt_port, seal_command(central, queued))
            with agent:  # drain what it still held (and answer what was queued)
                assert await asyncio.to_thread(agent.wait_for_log, "uplink.up", 30), agent.logs()

                async def complete() -> bool:
                    return set(range(1, last + 1)) <= await stored_seqs(pg_dsn)

                await wait_until(complete, 60, "the agent's backlog stored")
                if queued is not None:
                    sql = f"SELECT count(*) FROM results WHERE command_id = '{queued.id}' AND code = 'done'"  # noqa: E501
                    await wait_until(
                        lambda: at_least(pg_dsn, sql, 1), 60, "the queued command answered"
                    )
        await wait_until(lambda: at_least(pg_dsn, "SELECT -count(*) FROM holes", 0), 30, "no hole")
    finally:
        code = ingest.stop()
    assert code == 0, ingest.log.read_text()[-2000:]
    book = await ledger(pg_dsn)
    assert book["twice"] == 0 and book["holes"] == 0
    assert await pg_count(pg_dsn, "SELECT count(*) FROM messages") == len(await stored_seqs(pg_dsn))
    assert min(await stored_seqs(pg_dsn)) == 1
    assert book["readings"] + await pg_count(pg_dsn, "SELECT count(*) FROM events") + (
        await pg_count(pg_dsn, "SELECT count(*) FROM results")) == book["entries"]  # fmt: skip


async def _send_ping(tmp_path: Path, mqtt_port: int, gw_trust: str) -> None:
    """`central send` without --site: the site comes from the agent's telemetry (RabbitMQ
    3.10 delivers no retained state to a wildcard subscription)."""
    sent = await asyncio.to_thread(
        cityedge, "central", "send", "gw-test", "-", "ping",
        "--broker", f"mqtt://127.0.0.1:{mqtt_port}", "--key", str(tmp_path / "central.key"),
        "--trust", gw_trust, "--timeout", "40", "--json",
    )  # fmt: skip
    assert sent.returncode == 0, (sent.stdout, sent.stderr)
    assert '"done"' in sent.stdout, sent.stdout


async def _publish_command(port: int, payload: bytes) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="console-queued", timeout=20) as c:
        await c.publish(
            topic_for(DEFAULT_PREFIX, "town-01", "gw-test", "command"), payload, qos=1, timeout=20
        )


async def test_real_agent_over_mqtt311_through_rabbitmq(tmp_path: Path, pg_dsn: str) -> None:
    node = RabbitNode(tmp_path / "rabbit")
    node.start()
    try:

        def restart() -> None:
            node.kill()
            node.start()

        await _scenario(tmp_path, pg_dsn, node.amqp_url, node.mqtt_port, restart, commands=True)
    finally:
        node.close()


async def test_real_agent_over_mqtt311_through_nats_jetstream(tmp_path: Path, pg_dsn: str) -> None:
    node = NatsNode(tmp_path / "nats")
    node.start()
    try:

        def restart() -> None:
            node.kill()
            node.start()

        await _scenario(tmp_path, pg_dsn, node.url, node.mqtt_port, restart, commands=True)
    finally:
        node.close()
