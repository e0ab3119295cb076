"""Modbus polling benchmark: 100 simulated lampposts polled every second by the
driver alone (no pipeline), planned requests against a naive baseline.

For each strategy the same street (real pymodbus servers on 127.0.0.1, in this
process) is polled for N one-second cycles; a cycle polls every device at once,
as the driver's per-device tasks do on a shared tick. Printed: Modbus requests
per device per cycle (counted at the simulated devices), wall ms per cycle,
CPU ms per cycle, and the baseline/planned ratios, measured in the same run.

    .venv/bin/python bench/modbus_poll.py [--devices 100] [--cycles 10] [--interval 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from dataclasses import dataclass, replace

import structlog

from cityedge.drivers.modbus.config import Section
from cityedge.drivers.modbus.driver import ModbusDriver
from cityedge.drivers.modbus.planner import plan
from cityedge.drivers.modbus.profile import Profile
from cityedge.street.modbus import ModbusStreet


@dataclass
class Result:
    label: str
    requests_per_device: float
    readings_per_cycle: float
    wall_ms: list[float]
    cpu_ms: list[float]


def one_request_per_point(profile: Profile) -> Profile:
    """The naive baseline: the same profile, its planner told not to merge."""
    limits = replace(profile.limits, merge=False)
    return replace(profile, limits=limits, requests=tuple(plan(profile.points.values(), limits)))


async def measure(
    label: str, street: ModbusStreet, naive: bool, cycles: int, interval: float
) -> Result:
    tables = street.driver_tables("bench", poll_interval=interval, timeout=2.0, retries=0)
    if naive:
        for device in tables["devices"]:
            device["profile"] = one_request_per_point(street.device(device["name"]).profile)
    driver = ModbusDriver(Section.parse(tables))
    names = [d.name for d in street.devices]
    try:
        await asyncio.gather(*(driver.poll(n) for n in names))  # connect; not measured
        before = {n: street.read_requests(n) for n in names}
        wall: list[float] = []
        cpu: list[float] = []
        readings = 0
        loop = asyncio.get_running_loop()
        tick = loop.time()
        for _ in range(cycles):
            tick += interval
            await asyncio.sleep(max(0.0, tick - loop.time()))
            started, cpu_started = time.perf_counter(), time.process_time()
            results = await asyncio.gather(*(driver.poll(n) for n in names))
            wall.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - cpu_started) * 1000)
            readings += sum(len(r) for r in results)
        sent = sum(street.read_requests(n) - before[n] for n in names)
        unhealthy = [h.device for h in driver.health() if h.errors]
        if unhealthy:
            print(f"  ({label}: {len(unhealthy)} device(s) with errors: {unhealthy[:3]}…)")
        return Result(label, sent / len(names) / cycles, readings / cycles, wall, cpu)
    finally:
        await driver.aclose()


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    async with ModbusStreet(lampposts=args.devices, meters=0, seed=1) as street:
        points = len(street.device(street.devices[0].name).profile.points)
        print(f"{args.devices} lampposts ({points} points each), {args.cycles} cycles "
              f"every {args.interval:g} s, driver + simulated devices in one process")  # fmt: skip
        planned = await measure("planned", street, False, args.cycles, args.interval)
        naive = await measure("per point", street, True, args.cycles, args.interval)

    print(f"{'strategy':<10} {'req/dev/cycle':>13} {'readings/cycle':>14} "
          f"{'wall ms median':>14} {'p95':>8} {'max':>8} {'cpu ms/cycle':>12}")  # fmt: skip
    for r in (planned, naive):
        print(
            f"{r.label:<10} {r.requests_per_device:>13.2f} {r.readings_per_cycle:>14.0f} "
            f"{statistics.median(r.wall_ms):>14.1f} {p95(r.wall_ms):>8.1f} {max(r.wall_ms):>8.1f} "
            f"{statistics.median(r.cpu_ms):>12.1f}"
        )
    over = sum(1 for ms in naive.wall_ms if ms > args.interval * 1000)
    requests = naive.requests_per_device / planned.requests_per_device
    wall = statistics.median(naive.wall_ms) / statistics.median(planned.wall_ms)
    cpu = statistics.median(naive.cpu_ms) / statistics.median(planned.cpu_ms)
    print(
        f"ratio per-point/planned: requests x{requests:.1f}, wall time x{wall:.1f}, cpu x{cpu:.1f}"
    )
    if over:
        print(f"the baseline overran the {args.interval:g} s cycle {over}/{args.cycles} times")


if __name__ == "__main__":
    asyncio.run(main())
