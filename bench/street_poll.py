"""The spine under load: 100 simulated lamppost controllers (20 registers each)
polled every second by the real agent (a subprocess), through a private Mosquitto
to a verifying command post.

Prints Modbus requests per device per cycle (counted at the simulated devices),
wall ms per poll cycle, the agent's CPU % of one core and peak RSS, poll-to-broker
latency p50/p95 (reading timestamp -> verified at the subscriber) and outbox
ingest in readings/s. The baseline, measured in the same run, is a naive poller
that reads each point with its own request (what a gateway without a planner
does); figures ThingsBoard IoT Gateway reached on this machine for the same work
are printed for reference.

    .venv/bin/python bench/street_poll.py [--devices 100] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cityedge.drivers.modbus.profile import resolve_profile
from cityedge.drivers.modbus.tcp import TcpLink
from cityedge.gateway.outbox import Entry, Outbox
from cityedge.protocol.key_files import create_key
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.sealing import message_sealer
from cityedge.street.broker import Broker
from cityedge.street.modbus import ModbusStreet
from tests.support.agent_process import AgentProcess, to_toml
from tests.support.command_post import CommandPost

THINGSBOARD = {"requests": 17, "cpu": 28.5, "rss_mb": 71, "p50_s": 0.41}


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def proc_memory_mb(pid: int) -> dict[str, float]:
    """Pss and private (unique) memory: RSS also counts shared library pages."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Pss", "Private_Clean", "Private_Dirty", "Shared_Clean"):
            out[key] = int(rest.split()[0]) / 1024
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def naive_cycle(street: ModbusStreet) -> tuple[int, float]:
    """One cycle of one-request-per-point polling over every device (the baseline)."""
    profile = resolve_profile("lamppost")
    requests = 0
    start = time.perf_counter()

    async def one(host: str, port: int) -> int:
        link = TcpLink(host, port, timeout=2.0)
        await link.open(2.0)
        n = 0
        try:
            for point in profile.points.values():
                await link.read(point.register, point.address, point.size, unit=1, timeout=2.0)
                n += 1
        finally:
            await link.close()
        return n

    counts = await asyncio.gather(*(one(d.host, d.port) for d in street.devices))
    requests = sum(counts)
    return requests, (time.perf_counter() - start) * 1000


def ingest_rate(workdir: Path, n: int = 300_000) -> float:
    seal = message_sealer(SigningKey.generate(), gateway="gw-bench", site="bench")
    outbox = Outbox.open(workdir / "ingest.db", seal=seal, max_bytes=1 << 30, max_age=1e9)
    body = bytes(msgpack.packb(["lamppost-001", "power", 61.5, time.time(), "W"]))
    start = time.perf_counter()
    for _ in range(0, n, 1000):
        outbox.add([Entry("telemetry", 1, time.time(), body) for _ in range(1000)])
        outbox.commit()
    rate = n / (time.perf_counter() - start)
    outbox.close()
    return rate


async def main(devices: int, seconds: float) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="cityedge-bench-"))
    key = create_key(workdir / "state" / "keys" / "gateway.key")
    with Broker(workdir=workdir / "broker") as broker:
        async with ModbusStreet(lampposts=devices, meters=0) as street:
            naive = [await naive_cycle(street) for _ in range(3)]
            naive_requests = statistics.mean(r for r, _ in naive) / devices
            naive_ms = statistics.median(ms for _, ms in naive)

            doc = {
                "gateway": {"id": "gw-bench", "site": "bench", "state_dir": str(workdir / "state")},
                "uplink": {"host": "127.0.0.1", "port": broker.port},
                "logging": {"level": "warning", "format": "json"},
                "drivers": {"modbus": [street.driver_tables(name="street", poll_interval=1.0)]},
            }
            config = workdir / "agent.toml"
            config.write_text(to_toml(doc))
            names = [d.name for d in street.devices]
            async with CommandPost(broker.port, key.public_key) as post:
                agent = AgentProcess(config).start()
                assert agent.proc is not None
                await post.wait_for(lambda: len(post.devices_seen()) == devices, timeout=60)
                await asyncio.sleep(2)  # warm-up done: measure from here
                pid = agent.proc.pid
                cpu0, t0 = proc_cpu_seconds(pid), time.monotonic()
                req0 = sum(street.read_requests(n) for n in names)
                seen0 = len(post.readings)
                await asyncio.sleep(seconds)
                cpu1, t1 = proc_cpu_seconds(pid), time.monotonic()
                req1 = sum(street.read_requests(n) for n in names)
                rss = proc_peak_rss_mb(pid)
                memory = proc_memory_mb(pid)
                window = post.readings[seen0:]
                agent.stop()
            latencies = [r.arrived - r.reading.ts for r in window]
            polls = {(r.reading.device, r.reading.ts) for r in window}
            cycles = len(polls) / devices if devices else 0
            # wall ms per cycle: spread of the poll timestamps within one second's cycle
            by_cycle: dict[int, list[float]] = {}
            for _, ts in polls:
                by_cycle.setdefault(int(ts), []).append(ts)
            spans = [(max(v) - min(v)) * 1000 for v in by_cycle.values() if len(v) > devices // 2]
    cpu_pct = 100 * (cpu1 - cpu0) / (t1 - t0)
    requests_per_device = (req1 - req0) / devices / max(1.0, (t1 - t0))
    ingest = ingest_rate(workdir)

    tb = THINGSBOARD
    spread = statistics.median(spans) if spans else float("nan")
    private = memory.get("Private_Clean", 0) + memory.get("Private_Dirty", 0)
    lines = [
        f"lamppost controllers: {devices}, polled every 1 s, measured for {t1 - t0:.1f} s",
        f"  polls per device that reported a change (report by exception): {cycles:.1f}",
        f"  Modbus requests / device / cycle: {requests_per_device:.2f}"
        f"  (naive per-point baseline {naive_requests:.2f}:"
        f" {naive_requests / requests_per_device:.1f}x fewer; ThingsBoard {tb['requests']})",
        f"  wall ms per poll cycle (median spread): {spread:.1f}"
        f"  (naive baseline, all devices: {naive_ms:.1f})",
        f"  agent CPU: {cpu_pct:.2f} % of one core  (target <= 3 %;"
        f" ThingsBoard {tb['cpu']} %: {tb['cpu'] / max(cpu_pct, 0.01):.1f}x less)",
        f"  agent peak RSS: {rss:.1f} MB  (target <= 40 MB; ThingsBoard {tb['rss_mb']} MB)",
        f"    at the end: shared library pages {memory.get('Shared_Clean', 0):.1f} MB,"
        f" private {private:.1f} MB, PSS {memory.get('Pss', 0):.1f} MB",
        f"  poll-to-broker latency: p50 {pct(latencies, 0.5):.3f} s,"
        f" p95 {pct(latencies, 0.95):.3f} s  (target p50 <= 0.25 s; ThingsBoard {tb['p50_s']} s)",
        f"  outbox ingest: {ingest:,.0f} readings/s  (target >= 100,000)",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    asyncio.run(main(args.devices, args.seconds))
