"""One ingest worker as an operator sees it: `--site` takes only that site, a forged
message is refused and counted by reason, /health and /metrics tell the truth, and
SQLite (the embedded default) holds the result."""

from __future__ import annotations

import json
import re
import sqlite3
import time
import urllib.request
from pathlib import Path

from cityedge.protocol.keys import SigningKey
from cityedge.protocol.topics import DEFAULT_PREFIX
from cityedge.street.broker import Broker, free_port
from cityedge.street.fleet import publish_reliably
from tests.central_ingest.engines import drop_database
from tests.central_ingest.helpers import fleet
from tests.central_ingest.outbox_gateway import OutboxGateway
from tests.central_ingest.workers import Worker, trust_args, wait_until


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return int(conn.execute(sql).fetchone()[0] or 0)
        except sqlite3.OperationalError:
            return 0  # the schema is not there yet


async def test_site_partition_health_metrics_and_rejections(tmp_path: Path, prefix: str) -> None:
    north = fleet(2, lampposts=3, site="north", prefix=prefix)
    south = [g for g in fleet(4, lampposts=3, site="south", prefix=prefix)][2:]
    db = tmp_path / "central.db"
    keys = tmp_path / "keys"  # north's keys as an operator keeps them: one file a gateway
    keys.mkdir()
    for g in north:
        (keys / f"{g.gateway}.pub").write_text(g.key.public_text() + "\n")
    with Broker(workdir=tmp_path / "broker") as broker:
        worker = Worker(
            tmp_path / "ingest.log", "--source", broker.url, "--store", f"sqlite:{db}",
            "--site", "north", "--prefix", prefix, "--http", "127.0.0.1:0",
            "--log-level", "warning", "--trust-dir", str(keys), *trust_args(south),
        ).start()  # fmt: skip
        try:
            await worker.ready()
            port = int(re.findall(r"http 127\.0\.0\.1:(\d+)", worker.log.read_text())[-1])

            async def subscribed() -> bool:
                return "cityedge-ingest-north" in broker.log_path.read_text()

            await wait_until(subscribed, 30, "ingest subscribed")
            south_msgs = [(g.topic, g.telemetry(1_790_000_000.0 + i)[1]) for g in south
                          for i in range(5)]  # fmt: skip
            await publish_reliably("127.0.0.1", broker.port, south_msgs, client_id="south")
            forged = bytearray(north[0].telemetry(1_790_000_000.0)[1])
            forged[-1] ^= 0x01  # the last byte of the signature
            north_msgs = [(north[0].topic, bytes(forged))] + [
                (g.topic, g.telemetry(1_790_000_100.0 + i)[1]) for g in north for i in range(5)
            ]
            await publish_reliably("127.0.0.1", broker.port, north_msgs, client_id="north")

            async def stored() -> bool:
                return _count(db, "SELECT count(*) FROM messages") >= 10

            await wait_until(stored, 60, "north's 10 messages stored")

            async def scraped() -> bool:
                return "cityedge_ingest_readings_total 120.0" in _get(
                    f"http://127.0.0.1:{port}/metrics")[1]  # fmt: skip

            await wait_until(scraped, 30, "metrics showing 120 readings")
            status, body = _get(f"http://127.0.0.1:{port}/health")
            assert status == 200 and json.loads(body)["ok"] is True
            metrics = _get(f"http://127.0.0.1:{port}/metrics")[1]
            assert 'cityedge_ingest_rejected_total{reason="bad-signature"} 1.0' in metrics
            assert 'cityedge_ingest_messages_total{outcome="stored"} 10.0' in metrics
        finally:
            assert worker.stop() == 0, worker.log.read_text()[-2000:]
    sites = {r[0] for r in sqlite3.connect(db).execute("SELECT DISTINCT site FROM readings")}
    assert sites == {"north"}
    assert _count(db, "SELECT count(*) FROM rejected WHERE reason = 'bad-signature'") == 1
    assert _count(db, "SELECT count(*) FROM holes") == 0


async def test_what_a_gateway_evicted_is_accounted_for_not_a_hole(tmp_path: Path) -> None:
    """The agent's outbox evicts a stretch of old readings (max-age) between two that
    arrive: its `outbox.evicted` event names the range, and ingest leaves no hole."""
    key = SigningKey.from_seed(bytes([77]) * 32)

    def gateway() -> OutboxGateway:
        return OutboxGateway(tmp_path / "outbox.db", key, gateway="gw-evict", site="north",
                             prefix=DEFAULT_PREFIX, max_age=86400.0)  # fmt: skip

    real = gateway()
    db = tmp_path / "central.db"
    now = time.time()
    with Broker(workdir=tmp_path / "broker") as broker:
        worker = Worker(tmp_path / "ingest.log", "--source", broker.url, "--store",
                        f"sqlite:{db}", "--trust", f"gw-evict={key.public_text()}",
                        "--log-level", "warning").start()  # fmt: skip
        try:
            await worker.ready()

            async def subscribed() -> bool:
                return "cityedge-ingest" in broker.log_path.read_text()

            await wait_until(subscribed, 30, "ingest subscribed")
            real.take(100, now - 10)  # seqs 1-4, delivered
            await real.drain("127.0.0.1", broker.port)
            real.close()
            real = gateway()  # the agent restarts: its outbox checks the ages at the first commit
            real.take(300, now - 30 * 86400)  # a month old: evicted, an event names seqs 5-16
            real.take(50, now)
            await real.drain("127.0.0.1", broker.port)
            last = real.outbox.last_seq()

            async def all_there() -> bool:
                return _count(db, "SELECT max(seq) FROM messages") == last

            await wait_until(all_there, 30, f"seq {last} stored")
        finally:
            real.close()
            assert worker.stop() == 0, worker.log.read_text()[-2000:]
    with sqlite3.connect(db) as conn:
        accounted = conn.execute("SELECT first, last FROM accounted").fetchall()
        holes = conn.execute("SELECT count(*) FROM holes").fetchone()[0]
    assert accounted == [(5, 16)]
    assert holes == 0


async def test_health_says_503_when_the_database_is_gone(tmp_path: Path, pg_dsn: str) -> None:
    (gw,) = fleet(1)
    with Broker(workdir=tmp_path / "broker") as broker:
        worker = Worker(tmp_path / "ingest.log", "--source", broker.url, "--store", pg_dsn,
                        "--http", "127.0.0.1:0", *trust_args([gw])).start()  # fmt: skip
        try:
            await worker.ready()
            port = int(re.findall(r"http 127\.0\.0\.1:(\d+)", worker.log.read_text())[-1])

            async def healthy(want: int) -> bool:
                return _get(f"http://127.0.0.1:{port}/health")[0] == want

            await wait_until(lambda: healthy(200), 30, "healthy")
            await drop_database(pg_dsn)
            await wait_until(lambda: healthy(503), 30, "unhealthy once the database is gone")
            body = json.loads(_get(f"http://127.0.0.1:{port}/health")[1])
            assert body["ok"] is False and body["store"] == "failing"
            assert "does not exist" in body["detail"]
        finally:
            assert worker.stop() == 0, worker.log.read_text()[-2000:]


def test_a_worker_stopped_while_its_broker_is_away_stops_cleanly(tmp_path: Path) -> None:
    """SIGTERM while the source cannot be reached (its reconnect loop) ends the worker
    with status 0 and its summary; the test harness waits for the worker's handlers
    first, so a worker stopped the moment it started is stopped, never killed (-15)."""
    key = SigningKey.from_seed(bytes([5]) * 32)
    worker = Worker(
        tmp_path / "ingest.log", "--source", f"mqtt://127.0.0.1:{free_port()}",
        "--store", f"sqlite:{tmp_path / 'central.db'}", "--trust", key.public_text(),
    ).start()  # fmt: skip
    assert worker.stop() == 0, worker.log.read_text()
    log = worker.log.read_text()
    assert "ingest running" in log and "stored 0 messages" in log, log
