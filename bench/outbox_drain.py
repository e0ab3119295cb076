"""The outbox under a long outage: ingest, backlog drain, flash wear, and the way back.

1. Ingest: N readings (default 1,000,000; real `packed_reading` entries of a
   100-lamppost street) added to the real `cityedge.gateway.outbox.Outbox` in a temp dir and
   committed one transaction per window of `--window` rows (10,000 = the 0.1 s
   commit window at 100,000 readings/s), sealed (signed) as they are committed,
   with the uplink down. Prints readings/s, commits and bytes written per 1,000
   readings.
2. Drain: a child process opens that store and runs the real `cityedge.gateway.uplink.Uplink`
   against a private Mosquitto until every message is sent and PUBACKed (its
   peak RSS is the child's VmHWM, so nothing the parent holds pollutes it). The
   baseline, in the same run, to the same broker: a bare aiomqtt loop in another
   child publishing payloads of exactly the sizes the uplink sent, same count,
   QoS 1, with the same in-flight window; once as `await client.publish(...)`
   gives it (a timeout, hence a timer, per publish) and once without timeouts,
   the leanest loop aiomqtt allows. Neither has a subscriber. `--rounds` rounds
   (default 3) drain the same backlog again; the medians are printed.
3. Outage: the real agent (a subprocess, default uplink settings) polls simulated
   lampposts; a verifying command post subscribes; the broker is stopped for
   `--outage` s and started again. Prints the time from the broker's return to the
   first reading taken after it arriving at the command post, and to the arrival
   of the last reading buffered during the outage.

    .venv/bin/python bench/outbox_drain.py [--readings 1000000] [--outage 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cityedge.gateway.config import GatewaySection, UplinkSection
from cityedge.gateway.outbox import Entry, Outbox, Sealed, Sealer
from cityedge.gateway.uplink import Uplink
from cityedge.protocol.entries import packed_reading
from cityedge.protocol.key_files import create_key, load_signing_key
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.sealing import message_sealer
from cityedge.sdk.model import Reading
from cityedge.street.broker import Broker
from cityedge.street.modbus import ModbusStreet
from tests.support.agent_process import AgentProcess, to_toml
from tests.support.command_post import CommandPost
from tests.support.outbox_probe import committed_readings

THINGSBOARD_FIRST_LIVE_S = 5.4  # ThingsBoard IoT Gateway, this machine, 30 s outage
INFLIGHT = UplinkSection().inflight  # the agent's default in-flight window, for both loops
GATEWAY_ID, SITE = "gw-bench", "bench"


# --- measuring a process -----------------------------------------------------------------


def proc_status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def proc_io() -> dict[str, int]:
    """write_bytes: what reached the block layer; wchar: what went through write()."""
    out: dict[str, int] = {}
    for line in Path("/proc/self/io").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = int(value)
    return out


def progress(label: str, done: int, total: int, started: float) -> None:
    rate = done / max(time.perf_counter() - started, 1e-9)
    print(f"\r  {label}: {done:,}/{total:,} ({rate:,.0f}/s)   ", end="", file=sys.stderr)


class CountingOutbox(Outbox):
    """The real store, counting its transactions and the sizes of what it sent."""

    commits = 0
    fsyncs = 0
    sent_sizes: list[int]
    last_ack = 0.0  # perf_counter: the drain ends with the last PUBACK, not at a poll

    def ack(self, messages: Iterable[Sealed]) -> None:
        messages = list(messages)
        self.sent_sizes.extend(len(m.payload) for m in messages)
        self.last_ack = time.perf_counter()
        super().ack(messages)

    @contextlib.contextmanager
    def _transaction(self, *, fsync: bool = False) -> Iterator[None]:  # type: ignore[override]
        self.commits += 1
        self.fsyncs += fsync
        with super()._transaction(fsync=fsync):
            yield


def bench_sealer(key: SigningKey) -> Sealer:
    return message_sealer(key, gateway=GATEWAY_ID, site=SITE)


# --- 1. ingest -------------------------------------------------------------------------------


def street_bodies(count: int = 2000) -> list[tuple[bytes, tuple[Any, ...] | None]]:
    """Encoded readings as the pipeline makes them: 100 lampposts, a few points each."""
    points = [("power", "W"), ("voltage", "V"), ("lamp_on", None), ("dimming", "%")]
    now = time.time()
    bodies = []
    for i in range(count):
        point, unit = points[i % len(points)]
        value: float | bool = (i % 2 == 0) if unit is None else round(random.uniform(0, 250), 1)
        reading = Reading(f"lamppost-{i % 100:03d}", point, value, now + i * 0.01, unit)
        bodies.append(packed_reading(reading))  # bytes and fields, as the pipeline keeps them
    return bodies


def ingest(db: Path, key: SigningKey, total: int, window: int) -> dict[str, float]:
    outbox = Outbox.open(db, seal=bench_sealer(key), max_bytes=1 << 40, max_age=1e9)
    bodies = street_bodies()
    io0 = proc_io()
    started = time.perf_counter()
    done = 0
    while done < total:
        n = min(window, total - done)
        ts = time.time()
        outbox.add([Entry("telemetry", 1, ts, *bodies[(done + i) % len(bodies)]) for i in range(n)])
        outbox.commit()
        done += n
        if done % (10 * window) == 0 or done == total:
            progress("ingest", done, total, started)
    seconds = time.perf_counter() - started
    commits = outbox.counters.commits
    body_bytes = outbox.counters.bytes_committed
    outbox.close()  # the checkpoint that moves the WAL into the database counts too
    io1 = proc_io()
    print(file=sys.stderr)
    per_k = 1000 / total
    return {
        "rate": total / seconds,
        "seconds": seconds,
        "commits_per_k": commits * per_k,
        "write_bytes_per_k": (io1["write_bytes"] - io0["write_bytes"]) * per_k,
        "wchar_per_k": (io1["wchar"] - io0["wchar"]) * per_k,
        "body_bytes_per_k": body_bytes * per_k,
        "db_bytes": db.stat().st_size,
    }


# --- 2. drain (child process) and the bare baseline (child process) -------------------------


async def drain_child(db: Path, key_path: Path, port: int, total: int) -> dict[str, Any]:
    # aiomqtt warns once per publish beyond 10 pending calls; the uplink keeps a whole
    # in-flight window pending on purpose, so the warnings would only bury the progress.
    logging.getLogger("mqtt").setLevel(logging.ERROR)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    key = load_signing_key(key_path)
    outbox = CountingOutbox.open(db, seal=bench_sealer(key), max_bytes=1 << 40, max_age=1e9)
    assert isinstance(outbox, CountingOutbox)
    outbox.sent_sizes = []
    rss_before = proc_status_mb("VmRSS")
    uplink = Uplink(
        # no live data comes here: the live-first pause (2 s by default, measured in
        # scenario 3) would be counted as drain time
        UplinkSection(host="127.0.0.1", port=port, live_first_wait=0),
        GatewaySection(id=GATEWAY_ID, site=SITE, state_dir=db.parent),
        outbox,
        key,
        birth=dict,
    )
    io0 = proc_io()
    started = time.perf_counter()
    task = asyncio.create_task(uplink.run())
    deadline = time.monotonic() + 3600
    shown = 0.0
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        if time.perf_counter() - shown > 0.5:
            shown = time.perf_counter()
            progress("drain (uplink)", uplink.stats.entries_sent, total, started)
        if uplink.stats.entries_sent >= total:
            stats = outbox.stats()
            if not stats.rows and stats.sealed_unacked == 0:
                break
        if task.done():
            task.result()  # raises what stopped the uplink
    seconds = outbox.last_ack - started
    progress("drain (uplink)", uplink.stats.entries_sent, total, started)
    print(file=sys.stderr)
    await uplink.stop()
    await asyncio.wait_for(task, 10)
    outbox.close()
    io1 = proc_io()
    return {
        "seconds": seconds,
        "messages": uplink.stats.messages_sent,
        "entries": uplink.stats.entries_sent,
        "peak_rss_mb": proc_status_mb("VmHWM"),
        "rss_before_mb": rss_before,
        "commits": outbox.commits,
        "fsyncs": outbox.fsyncs,
        "write_bytes": io1["write_bytes"] - io0["write_bytes"],
        "wchar": io1["wchar"] - io0["wchar"],
        "sizes": outbox.sent_sizes,
    }


async def bare_child(sizes: list[int], port: int, lean: bool) -> dict[str, Any]:
    """`lean`: no timeout per publish (aiomqtt then awaits the PUBACK directly); else
    aiomqtt's default, a timer per publish, as `await client.publish(...)` gives."""
    import aiomqtt

    options: dict[str, Any] = {"timeout": math.inf} if lean else {}
    blob = os.urandom(max(sizes))
    window = asyncio.Semaphore(INFLIGHT)
    started = time.perf_counter()
    sent = 0
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier="bare-loop", max_inflight_messages=INFLIGHT
    ) as client:
        client.pending_calls_threshold = INFLIGHT  # a full window is the point, not a warning

        async def one(size: int) -> None:
            nonlocal sent
            try:
                await client.publish("bench/bare", blob[:size], qos=1, **options)
            finally:
                window.release()
            sent += 1

        tasks = []
        for i, size in enumerate(sizes):
            await window.acquire()
            tasks.append(asyncio.create_task(one(size)))
            if i % 200 == 0:
                progress("drain (bare aiomqtt loop)", sent, len(sizes), started)
        await asyncio.gather(*tasks)
    seconds = time.perf_counter() - started
    progress("drain (bare aiomqtt loop)", sent, len(sizes), started)
    print(file=sys.stderr)
    return {"seconds": seconds, "messages": sent}


def run_child(*args: str) -> None:
    subprocess.run([sys.executable, __file__, *args], check=True)


# --- 3. outage with the real agent -------------------------------------------------------------


async def outage(workdir: Path, seconds: float, poll: float) -> dict[str, Any]:
    key = create_key(workdir / "state" / "keys" / "gateway.key")
    with Broker(workdir=workdir / "broker-outage") as broker:
        async with ModbusStreet(lampposts=10, meters=0) as street:
            doc = {
                "gateway": {"id": "gw-bench", "site": "bench", "state_dir": str(workdir / "state")},
                "uplink": {"host": "127.0.0.1", "port": broker.port},  # default backoff
                "pipeline": {"full_report_interval": 0.001},  # every poll goes up
                "logging": {"level": "warning", "format": "json"},
                "drivers": {"modbus": [street.driver_tables(name="street", poll_interval=poll)]},
            }
            config = workdir / "agent.toml"
            config.write_text(to_toml(doc))
            db = workdir / "state" / "outbox.db"
            async with CommandPost(broker.port, key.public_key) as post:
                with AgentProcess(config):
                    if not await post.wait_for(lambda: len(post.readings) > 100, 60):
                        raise RuntimeError(f"no readings from the agent; see {config}.log")
                    await asyncio.sleep(2)
                    broker.stop()
                    stopped = time.time()
                    for left in range(int(seconds), 0, -1):
                        print(f"\r  outage: broker down, {left:3d} s ", end="", file=sys.stderr)
                        await asyncio.sleep(1)
                    await asyncio.sleep(seconds - int(seconds))
                    print(file=sys.stderr)
                    broker.start()
                    back = time.time()
                    backlog = {r for r in committed_readings(db) if r[2] < back}

                    def delivered() -> set[tuple[str, str, float]]:
                        return {(r.reading.device, r.reading.point, r.reading.ts)
                                for r in post.readings}  # fmt: skip

                    live = await post.wait_for(
                        lambda: any(r.reading.ts >= back for r in post.readings), 120
                    )
                    complete = await post.wait_for(lambda: backlog <= delivered(), 300)
                    await asyncio.sleep(1)
    first_live = min((r.arrived for r in post.readings if r.reading.ts >= back), default=None)
    last_backlog = max(
        (r.arrived for r in post.readings if stopped <= r.reading.ts < back), default=None
    )
    return {
        "outage_s": back - stopped,
        "backlog_readings": len(backlog),
        "first_live_s": first_live - back if live and first_live else float("nan"),
        "last_backlog_s": last_backlog - back if complete and last_backlog else float("nan"),
        "lost": len(backlog - delivered()),
        "duplicates": post.duplicates,
    }


# --- the whole run -------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="cityedge-outbox-bench-"))
    key_path = workdir / "keys" / "gateway.key"
    create_key(key_path)
    db = workdir / "drain" / "outbox.db"
    print(f"1/3 ingest of {args.readings:,} readings into {db.name}", file=sys.stderr)
    ing = ingest(db, load_signing_key(key_path), args.readings, args.window)

    pristine = workdir / "pristine"
    pristine.mkdir()
    for f in db.parent.iterdir():
        shutil.copy2(f, pristine / f.name)
    rounds: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = []
    with Broker(workdir=workdir / "broker-drain", persistence=False) as broker:
        port = str(broker.port)
        for r in range(args.rounds):
            print(f"2/3 round {r + 1}/{args.rounds}: drain through the uplink, then the bare"
                  " loops", file=sys.stderr)  # fmt: skip
            for f in pristine.iterdir():  # the same backlog every round
                shutil.copy2(f, db.parent / f.name)
            drained, bare, lean = (
                workdir / f"{name}-{r}.json" for name in ("drain", "bare", "lean")
            )
            run_child(
                "--child", "drain", str(db), str(key_path), port, str(args.readings), str(drained)
            )
            run_child("--child", "bare", str(drained), port, str(bare), "default")
            run_child("--child", "bare", str(drained), port, str(lean), "lean")
            one, two, three = (json.loads(f.read_text()) for f in (drained, bare, lean))
            rounds.append((one, two, three))
    d = rounds[0][0]

    out = None
    if args.outage > 0:
        print(f"3/3 outage of {args.outage:g} s with the real agent", file=sys.stderr)
        out = await outage(workdir / "outage", args.outage, args.poll)

    n = args.readings
    per_k = 1000 / n

    def rate(result: dict[str, Any]) -> float:
        return float(result["messages"]) / float(result["seconds"])

    msgs_s = statistics.median(rate(dr) for dr, _, _ in rounds)
    bare_s = statistics.median(rate(b) for _, b, _ in rounds)
    lean_s = statistics.median(rate(le) for _, _, le in rounds)
    ratios = [rate(dr) / rate(b) for dr, b, _ in rounds]
    lean_ratios = [rate(dr) / rate(le) for dr, _, le in rounds]
    ratio = statistics.median(ratios)
    mean_kib = sum(d["sizes"]) / len(d["sizes"]) / 1024
    batch = UplinkSection().batch_max_readings
    commits = d["commits"] * per_k
    lines = [
        f"outbox: {n:,} readings, {d['messages']:,} messages of {mean_kib:.1f} KiB"
        f" (batch_max_readings {batch}), in-flight window {INFLIGHT}",
        f"  ingest: {ing['rate']:,.0f} readings/s, commit per {args.window:,} rows"
        f"  (target >= 100,000: {verdict(ing['rate'] >= 100_000)})",
        f"    per 1,000 readings: {ing['commits_per_k']:.2f} commits,"
        f" {ing['write_bytes_per_k'] / 1024:.1f} KiB to disk (write_bytes),"
        f" {ing['wchar_per_k'] / 1024:.1f} KiB through write();"
        f" sealed messages {ing['body_bytes_per_k'] / 1024:.1f} KiB",
        f"  drain via uplink: {msgs_s:,.0f} msgs/s, {msgs_s * n / d['messages']:,.0f}"
        f" readings/s (median of {len(rounds)} rounds, each the same backlog)",
        f"  bare aiomqtt loop, same sizes and count: {bare_s:,.0f} msgs/s"
        f" (aiomqtt's default: a timeout per publish); {lean_s:,.0f} msgs/s without",
        f"  ratio uplink / bare: {ratio:.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
        f"  (target >= 0.8: {verdict(ratio >= 0.8)});"
        f" against the loop without timeouts {statistics.median(lean_ratios):.2f}"
        f" [{min(lean_ratios):.2f}-{max(lean_ratios):.2f}]",
        f"  drain peak RSS (child VmHWM): {d['peak_rss_mb']:.1f} MB,"
        f" {d['rss_before_mb']:.1f} MB before the drain"
        f"  (target <= 80 MB: {verdict(d['peak_rss_mb'] <= 80)})",
        f"    drain per 1,000 readings: {commits:.2f} commits"
        f" ({d['commits']} transactions, {d['fsyncs']} fsync'ed),"
        f" {d['write_bytes'] * per_k / 1024:.1f} KiB to disk,"
        f" {d['wchar'] * per_k / 1024:.1f} KiB through write()",
    ]
    if out is not None:
        first = out["first_live_s"]
        lines += [
            f"  outage {out['outage_s']:.1f} s, real agent (default uplink backoff),"
            f" 10 lampposts polled every {args.poll:g} s, {out['backlog_readings']:,} buffered",
            f"    broker back -> first live reading at the command post: {first:.2f} s"
            f"  (target <= 1.5 s: {verdict(first <= 1.5)};"
            f" ThingsBoard {THINGSBOARD_FIRST_LIVE_S} s)",
            f"    broker back -> last backlog reading: {out['last_backlog_s']:.2f} s;"
            f" lost {out['lost']}, duplicates dropped {out['duplicates']}",
        ]
    print("\n".join(lines))
    shutil.rmtree(workdir, ignore_errors=True)


def child(argv: list[str]) -> None:
    role, *rest = argv
    if role == "drain":
        db, key_path, port, total, out = rest
        result = asyncio.run(drain_child(Path(db), Path(key_path), int(port), int(total)))
    elif role == "bare":
        drained, port, out, mode = rest
        sizes = json.loads(Path(drained).read_text())["sizes"]
        result = asyncio.run(bare_child(sizes, int(port), lean=mode == "lean"))
    else:
        raise SystemExit(f"unknown child role {role!r}")
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        raise SystemExit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--window", type=int, default=10_000, help="rows per commit at ingest")
    parser.add_argument("--rounds", type=int, default=3, help="drain/baseline rounds")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds; 0 skips the scenario")
    parser.add_argument("--poll", type=float, default=0.2, help="lamppost poll interval, s")
    parsed = parser.parse_args()
    if (
        min(parsed.readings, parsed.window, parsed.rounds) < 1
        or parsed.outage < 0
        or parsed.poll <= 0
    ):
        parser.error("--readings, --window and --rounds must be >= 1, --outage >= 0, --poll > 0")
    asyncio.run(main(parsed))
