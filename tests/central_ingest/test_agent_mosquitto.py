"""The real agent (simulated lampposts over Modbus -> outbox -> signed MQTT v5 QoS 1)
through Mosquitto into ingest: ingest killed -9 mid-stream and restarted, the broker
restarted, the agent stopped and started — every message the agent no longer holds
(it got its PUBACK) is in the database once, and no hole is left.

Mosquitto is the embedded default; its PUBACK means "in memory", saved to disk every
`autosave_interval` (docs/command-post.md), so its restart here is an orderly one.
"""

from __future__ import annotations

import time
from pathlib import Path

from cityedge.protocol.keys import SigningKey
from cityedge.street.broker import Broker
from cityedge.street.fleet import publish_reliably
from cityedge.street.modbus import ModbusStreet
from tests.central_ingest.agent_ledger import at_least, outbox_seqs, stored_seqs
from tests.central_ingest.helpers import fleet
from tests.central_ingest.workers import Worker, ledger, pg_count, trust_args, wait_until
from tests.integration.conftest import ConfigWriter, broker, gateway_key, write_config
from tests.support.agent_process import AgentProcess, cityedge

__all__ = ["broker", "gateway_key", "write_config"]  # fixtures, imported for this module


async def test_real_agent_through_mosquitto_survives_ingest_kill9_and_broker_restart(
    tmp_path: Path, broker: Broker, gateway_key: SigningKey, write_config: ConfigWriter,
    pg_dsn: str,
) -> None:  # fmt: skip
    source = ["--source", broker.url, "--log-level", "warning"]
    declared = cityedge("central", "ingest", *source, "--declare-only")  # the session exists
    assert declared.returncode == 0, declared.stderr
    args = [*source, "--store", pg_dsn, "--trust", f"gw-test={gateway_key.public_text()}"]
    ingest = Worker(tmp_path / "ingest.log", *args).start()
    async with ModbusStreet(lampposts=5, meters=0) as street:
        config = write_config(modbus=[street.driver_tables(name="street", poll_interval=0.2)])
        agent = AgentProcess(config).start()
        try:
            readings = "SELECT count(*) FROM readings"
            await wait_until(lambda: at_least(pg_dsn, readings, 40), 60, "40 readings")
            ingest.kill9()  # mid-stream; the agent goes on publishing into the session
            before = await pg_count(pg_dsn, readings)
            ingest.start()
            await ingest.ready()
            await wait_until(lambda: at_least(pg_dsn, readings, before + 40), 60, "more")
            broker.stop()
            broker.start()
            after = await pg_count(pg_dsn, readings)
            await wait_until(lambda: at_least(pg_dsn, readings, after + 40), 60, "after restart")
        finally:
            agent.stop()
        held, last = outbox_seqs(tmp_path / "state" / "outbox.db")
        delivered = set(range(1, last + 1)) - held

        async def all_delivered() -> bool:
            return delivered <= await stored_seqs(pg_dsn)

        await wait_until(all_delivered, 60, "every PUBACKed message stored")
        with AgentProcess(config):  # drain what it still held

            async def complete() -> bool:
                return set(range(1, last + 1)) <= await stored_seqs(pg_dsn)

            await wait_until(complete, 60, "the agent's backlog stored")
    await wait_until(lambda: at_least(pg_dsn, "SELECT -count(*) FROM holes", 0), 30, "no hole")
    assert ingest.stop() == 0, ingest.log.read_text()[-2000:]
    book = await ledger(pg_dsn)
    assert book["twice"] == 0
    assert book["readings"] == book["entries"] - await pg_count(
        pg_dsn, "SELECT count(*) FROM events") - await pg_count(
        pg_dsn, "SELECT count(*) FROM results")  # fmt: skip
    assert book["holes"] == 0
    assert min(await stored_seqs(pg_dsn)) == 1


async def test_mosquitto_keeps_what_it_acknowledged_once_saved_even_through_kill9(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Mosquitto's PUBACK means "in memory"; after its next autosave the message survives
    a SIGKILL of the broker (docs/command-post.md: configure autosave_interval)."""
    gateways = fleet(2, lampposts=5)
    with Broker(workdir=tmp_path / "mq") as mq:
        source = ["--source", mq.url, "--log-level", "warning"]
        assert cityedge("central", "ingest", *source, "--declare-only").returncode == 0
        messages = [(g.topic, g.telemetry(1_790_000_000.0 + i)[1]) for g in gateways
                    for i in range(20)]  # fmt: skip
        await publish_reliably("127.0.0.1", mq.port, messages, client_id="gw-pub")
        await mq.saved(time.time())  # the next autosave after the last PUBACK
        mq.kill()
        mq.start()
        ingest = Worker(tmp_path / "ingest.log", *source, "--store", pg_dsn,
                        *trust_args(gateways)).start()  # fmt: skip
        try:
            await wait_until(lambda: at_least(pg_dsn, "SELECT count(*) FROM messages", 40),
                             60, "the 40 saved messages stored")  # fmt: skip
        finally:
            assert ingest.stop() == 0, ingest.log.read_text()[-2000:]
    assert (await ledger(pg_dsn))["holes"] == 0
