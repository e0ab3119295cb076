"""A city's fleet through RabbitMQ into PostgreSQL: what one ingest worker sustains.

1. A RabbitMQ node of its own (MQTT plugin, free ports) and a PostgreSQL database of
   its own on the local server (dropped at the end).
2. `--gateways` simulated gateways (default 1,000; 50-170 lampposts each, 4 points per
   lamppost: `cityedge.street.fleet`, the project's own entry encoding and Ed25519
   sealing) each seal `--messages` telemetry messages.
3. Live: `--workers` `cityedge central ingest` processes consume the quorum queue while
   the first half is published over MQTT at QoS 1 (each message kept until PUBACKed).
   Prints readings/s stored and the lag: how long after the last PUBACK the last
   reading was stored, and the deepest the queue got.
4. Outage under load: the workers are killed -9 and stay down for `--outage` s while the
   second half is published; then they restart. Prints the backlog and the sustained
   drain rate per worker (readings/s stored, from the first commit after the restart to
   the last), then checks: every message stored once, no reading twice, no hole.
5. Baseline, same run, same messages: a bare loop that unpacks each envelope (no
   signature check, no dedupe, no holes, no broker) and inserts the readings with
   binary COPY into a table of the same shape. The ratio says what verification,
   bookkeeping and the broker cost against the database alone.

    .venv/bin/python bench/ingest_fleet.py [--gateways 1000] [--messages 2] [--outage 10]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import msgpack

from cityedge.central.ingest.rows import READING_COLUMNS, split_value
from cityedge.central.ingest.sources.rabbitmq import queue_name
from cityedge.protocol.dictionary import DICTIONARY
from cityedge.protocol.keys import SigningKey
from cityedge.street.engines import RabbitNode
from cityedge.street.fleet import SimulatedGateway, publish_reliably

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PREFIX = "cityedge/v2"


def build_fleet(count: int, seed: int) -> list[SimulatedGateway]:
    rng = random.Random(seed)
    random.seed(seed)
    return [
        SimulatedGateway(
            SigningKey.from_seed(rng.randbytes(32)),
            f"gw-{i:04d}",
            f"town-{i % 24:02d}",
            rng.randint(50, 170),
            prefix=PREFIX,
        )
        for i in range(count)
    ]


def seal_all(fleet: list[SimulatedGateway], per_gateway: int, t0: float) -> list[tuple[str, bytes]]:
    return [(g.topic, g.telemetry(t0 + 60.0 * k)[1]) for k in range(per_gateway) for g in fleet]


async def count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql) or 0)
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()


async def queue_depth(url: str) -> int:
    conn = await aio_pika.connect(url)
    try:
        channel = await conn.channel()
        queue = await channel.declare_queue(queue_name(None), passive=True)
        return int(queue.declaration_result.message_count or 0)
    finally:
        await conn.close()


class Workers:
    def __init__(self, n: int, args: list[str], logdir: Path) -> None:
        self.n, self.args, self.logdir = n, args, logdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for i in range(self.n):
            with (self.logdir / f"worker-{i}.log").open("ab") as out:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "cityedge.cli", "central", "ingest", *self.args],
                    stdout=out, stderr=subprocess.STDOUT, cwd=ROOT))  # fmt: skip

    def cpu_seconds(self) -> float:
        """User + system CPU the running workers used (a busy machine slows the wall
        clock, not this)."""
        total = 0.0
        for p in self.procs:
            fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def kill9(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait(10)
        self.procs = []

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs = []


async def publish(node: RabbitNode, messages: list[tuple[str, bytes]], publishers: int) -> float:
    started = time.perf_counter()
    shares = [messages[i::publishers] for i in range(publishers)]
    await asyncio.gather(*(
        publish_reliably("127.0.0.1", node.mqtt_port, share, client_id=f"bench-pub-{i}",
                         window=64, deadline=3600)
        for i, share in enumerate(shares)
    ))  # fmt: skip
    return time.perf_counter() - started


async def watch_until(dsn: str, amqp: str, target: int, deadline: float) -> dict[str, float]:
    """Sample stored readings (and queue depth) until `target`; rate from first to last commit."""
    first: tuple[float, int] | None = None
    deepest = 0
    end = time.monotonic() + deadline
    while True:
        now, stored = time.perf_counter(), await count(dsn, "SELECT count(*) FROM readings")
        deepest = max(deepest, await queue_depth(amqp))
        if first is None and stored > 0:
            first = (now, stored)
        if stored >= target:
            break
        if time.monotonic() > end:
            raise SystemExit(f"only {stored} of {target} readings stored within {deadline}s")
        await asyncio.sleep(0.25)
    t_first, n_first = first or (now, 0)
    return {"done": now, "rate": (stored - n_first) / max(now - t_first, 1e-9),
            "deepest": deepest}  # fmt: skip


def rows_of(payload: bytes) -> list[tuple[Any, ...]]:
    """The bare path: unpack envelope, body and readings block (docs/protocol.md §6.1),
    no signature, no strict decoding, no dedupe."""
    body = msgpack.unpackb(msgpack.unpackb(payload)["body"])
    site, gw, seq, data = body["site"], body["gw"], body["seq"], body["data"]
    if isinstance(data, bytes):  # deflated from the protocol's preset dictionary (§6.1.5)
        data = msgpack.unpackb(zlib.decompressobj(zdict=DICTIONARY).decompress(data))
    t0, devices, points, groups = data
    out = []
    d, ms = -1, t0  # a group's device and dt are steps from the group before
    for group in groups:
        d, ms = d + 1 + group[0], ms + group[1]
        device, ts = devices[d], dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
        for i in range(3, len(group), 2):
            name, unit, scale = (points[group[i]] + [None, None])[:3]
            value = group[i + 1] / 10**scale if scale else group[i + 1]
            num, txt = split_value(value)
            out.append((ts, site, gw, seq, device, name, num, txt, unit, "good"))
    return out


async def baseline(dsn: str, messages: list[tuple[str, bytes]], days: set[dt.date]) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE baseline (ts timestamptz NOT NULL, site text NOT NULL, gateway text "
            "NOT NULL, seq bigint NOT NULL, device text NOT NULL, point text NOT NULL, num "
            "double precision, txt text, unit text, quality text NOT NULL) PARTITION BY RANGE (ts);"
            "CREATE INDEX ON baseline (site, device, point, ts)")  # fmt: skip
        for day in days:
            start = dt.datetime.combine(day, dt.time(), dt.UTC)
            await conn.execute(
                f"CREATE TABLE baseline_{day:%Y%m%d} PARTITION OF baseline FOR VALUES FROM "
                f"('{start.isoformat()}') TO ('{(start + dt.timedelta(days=1)).isoformat()}')"
            )
        started = time.perf_counter()
        for i in range(0, len(messages), 500):
            rows = [r for _, payload in messages[i : i + 500] for r in rows_of(payload)]
            async with conn.transaction():
                await conn.copy_records_to_table("baseline", records=rows,
                                                 columns=READING_COLUMNS)  # fmt: skip
        return time.perf_counter() - started
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="cityedge-bench-ingest-"))
    dsn_name = f"cityedge_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{dsn_name}"')
    await admin.close()
    dsn = f"postgresql://postgres@127.0.0.1:5432/{dsn_name}"
    node = RabbitNode(work / "rabbit")
    workers: Workers | None = None
    try:
        node.start()
        fleet = build_fleet(args.gateways, args.seed)
        t0 = time.time() - 3600.0
        sealing = time.perf_counter()
        live = seal_all(fleet, args.messages, t0)
        later = seal_all(fleet, args.messages, t0 + 60.0 * args.messages)
        sealing = time.perf_counter() - sealing
        per_msg = sum(4 * g.lampposts for g in fleet) / len(fleet)
        total_readings = int(sum(4 * g.lampposts for g in fleet) * args.messages * 2)
        print(f"fleet: {len(fleet)} gateways, {sum(g.lampposts for g in fleet)} lampposts, "
              f"{len(live) + len(later)} messages of {per_msg:.0f} readings on average "
              f"({total_readings} readings; sealed in {sealing:.1f}s)")  # fmt: skip
        trust = [a for g in fleet for a in ("--trust", f"{g.gateway}={g.key.public_text()}")]
        common = ["--source", node.amqp_url, "--prefix", PREFIX, "--log-level", "warning"]
        declare = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cityedge.cli", "central", "ingest", *common, "--declare-only",
            cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        if await declare.wait() != 0:
            raise SystemExit("could not declare the queue")
        workers = Workers(args.workers, [*common, "--store", dsn, "--max-batch",
                                         str(args.batch), *trust], work)  # fmt: skip
        workers.start()
        # --- live ------------------------------------------------------------------------
        half = total_readings // 2
        watching = asyncio.create_task(watch_until(dsn, node.amqp_url, half, 1800))
        took = await publish(node, live, args.publishers)
        acked_at = time.perf_counter()
        seen = await watching
        print(f"live:   {len(live)} messages published and PUBACKed in {took:.1f}s "
              f"({half / took:,.0f} readings/s offered); stored at {seen['rate']:,.0f} "
              f"readings/s by {args.workers} worker(s); last reading stored "
              f"{max(0.0, seen['done'] - acked_at):.2f}s after the last PUBACK; deepest "
              f"queue {seen['deepest']:.0f} messages")  # fmt: skip
        # --- outage under load -------------------------------------------------------------
        workers.kill9()
        outage_started = time.perf_counter()
        took = await publish(node, later, args.publishers)
        await asyncio.sleep(max(0.0, args.outage - (time.perf_counter() - outage_started)))
        backlog = await queue_depth(node.amqp_url)
        down = time.perf_counter() - outage_started
        workers.start()
        drained = await watch_until(dsn, node.amqp_url, total_readings, 3600)
        per_worker = drained["rate"] / args.workers
        per_cpu = len(later) * per_msg / workers.cpu_seconds()
        print(f"outage: workers down {down:.1f}s (kill -9) while {len(later)} messages were "
              f"published ({took:.1f}s); backlog {backlog} messages; drained at "
              f"{drained['rate']:,.0f} readings/s = {per_worker:,.0f} per worker "
              f"(target 50,000); {per_cpu:,.0f} readings per CPU-second of a worker "
              f"(start-up included)")  # fmt: skip
        workers.stop()
        workers = None
        book = {k: await count(dsn, sql) for k, sql in {
            "messages": "SELECT count(*) FROM messages",
            "readings": "SELECT count(*) FROM readings",
            "twice": "SELECT count(*) FROM (SELECT 1 FROM readings GROUP BY gateway, seq, "
                     "device, point HAVING count(*) > 1) d",
            "holes": "SELECT count(*) FROM holes",
        }.items()}  # fmt: skip
        lost = len(live) + len(later) - book["messages"]
        print(
            f"check:  {book['messages']} messages, {book['readings']} readings stored; "
            f"lost {lost}, stored twice {book['twice']}, holes {book['holes']}"
        )
        # --- baseline ----------------------------------------------------------------------
        days = {dt.datetime.fromtimestamp(t, dt.UTC).date()
                for t in (t0, t0 + 120.0 * args.messages)}  # fmt: skip
        cpu = time.process_time()
        bare = await baseline(dsn, live + later, days)
        bare_cpu = total_readings / (time.process_time() - cpu)
        bare_rate = total_readings / bare
        print(
            f"baseline: bare unpack + COPY of the same readings: {bare_rate:,.0f} readings/s "
            f"(one connection), {bare_cpu:,.0f} per CPU-second; ingest / baseline = "
            f"{per_worker / bare_rate:.2f} (wall), {per_cpu / bare_cpu:.2f} (CPU)"
        )
        if lost or book["twice"] or book["holes"]:
            raise SystemExit("FAILED: something was lost, stored twice or left a hole")
    finally:
        if workers is not None:
            workers.kill9()
        node.close()
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{dsn_name}" WITH (FORCE)')
        await admin.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gateways", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=2, help="per gateway and phase")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds ingest is down")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--publishers", type=int, default=8, help="MQTT connections")
    parser.add_argument("--batch", type=int, default=200, help="messages per transaction")
    parser.add_argument("--seed", type=int, default=1)
    logging.getLogger("mqtt").setLevel(logging.ERROR)  # aiomqtt's notes on pending publishes
    asyncio.run(main(parser.parse_args()))
