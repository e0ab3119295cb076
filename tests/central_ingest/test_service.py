"""One ingest worker as an operator sees it: `--site` takes only that site, a forged
message is refused and counted by reason, /health and /metrics tell the truth, and
SQLite (the embedded default) holds the result."""

from __future__ import annotations

import json
import re
import sqlite3
import urllib.request
from pathlib import Path

from cityedge.street.broker import Broker
from cityedge.street.fleet import publish_reliably
from tests.central_ingest.helpers import fleet
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
            return int(conn.execute(sql).fetchone()[0])
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
