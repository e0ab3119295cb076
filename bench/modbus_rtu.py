"""Modbus RTU benchmark: a junction's serial line polled flat out by the driver.

The junction — two traffic controllers and an energy meter, pymodbus's RTU
server — sits on a virtual cable (`cityedge.street.rs485`) whose relay gives
every byte its wire time at the chosen baud rate (a pty alone has none). Every
device asks to be polled continuously, so the line runs at capacity; measured
for a few seconds each, in the same run:

* the driver with the planned profiles (the planner's minimum of requests);
* the driver with one request per point (the naive baseline);
* a bare master: the same planned frames written and read back in a loop, no
  driver (scheduling, decoding, health) around it: what the line and the
  simulated devices allow.

Printed: transactions per cycle against the planner's minimum, cycles/s,
transactions/s, the line's theoretical ceiling (`line_budget`), and the ratios.

    .venv/bin/python bench/modbus_rtu.py [--baud 19200] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import structlog

from cityedge.drivers.modbus.budget import LineBudget, LineFormat, line_budget, read_frame_sizes
from cityedge.drivers.modbus.config import Section
from cityedge.drivers.modbus.driver import ModbusDriver
from cityedge.drivers.modbus.planner import plan
from cityedge.drivers.modbus.profile import Profile
from cityedge.drivers.modbus.rtu import rtu_crc
from cityedge.drivers.serialline.port import SerialPort
from cityedge.street.modbus import JunctionCabinet
from cityedge.street.rs485 import Cable


@dataclass
class Run:
    label: str
    transactions: int
    cycles: float  # transactions / transactions per cycle
    per_cycle: int  # transactions one cycle of every device takes
    seconds: float
    busy: float  # share of the wall time the line was held
    errors: int
    ceiling: LineBudget  # the line's best for this run's cycle

    @property
    def tx_per_s(self) -> float:
        return self.transactions / self.seconds

    @property
    def cycles_per_s(self) -> float:
        return self.cycles / self.seconds


def one_request_per_point(profile: Profile) -> Profile:
    limits = replace(profile.limits, merge=False)
    return replace(profile, limits=limits, requests=tuple(plan(profile.points.values(), limits)))


async def drive(
    label: str, cabinet: JunctionCabinet, port: Path, naive: bool, seconds: float
) -> Run:
    table = cabinet.driver_table("bench", port, line={"timeout": 0.5},
                                 poll_interval=0.0001, retries=0)  # fmt: skip
    for device in table["devices"]:
        profile = cabinet.device(device["name"]).profile
        device["profile"] = one_request_per_point(profile) if naive else profile
    driver = ModbusDriver(Section.parse(table))
    requests = [r for d in table["devices"] for r in d["profile"].requests]
    ceiling = line_budget(cabinet.line, [read_frame_sizes(r) for r in requests])

    async def emit(items: Any) -> None:
        pass

    task = asyncio.create_task(driver.run(emit))
    try:
        await asyncio.sleep(0.5)  # port open, first polls: not measured
        before = driver.line_report()
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        wall = time.perf_counter() - started
        after = driver.line_report()
        assert before is not None and after is not None
        transactions = after.transactions - before.transactions
        held = after.busy_s - before.busy_s
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0.3)  # let a reply cut off by the cancel drain away
    devices = [h for h in driver.health() if h.device in cabinet.units]
    errors = sum(sum(h.errors.values()) for h in devices)
    if errors:
        print(f"  ({label}: errors {[(h.device, h.errors) for h in devices if h.errors]})")
    cycles = transactions / len(requests)
    return Run(label, transactions, cycles, len(requests), wall, held / wall, errors, ceiling)


async def bare(cabinet: JunctionCabinet, port: Path, line: LineFormat, seconds: float) -> Run:
    """The planned frames, written and read back in a loop with the spec's gap."""
    frames: list[tuple[bytes, int]] = []
    sizes = []
    for name, (unit, _profile) in cabinet.units.items():
        for request in cabinet.device(name).profile.requests:
            sizes.append(read_frame_sizes(request))
            function = 4 if request.kind.value == "input" else 3
            body = bytes([unit, function]) + request.address.to_bytes(2, "big")
            body += request.count.to_bytes(2, "big")
            frames.append((body + rtu_crc(body), read_frame_sizes(request)[1]))
    got = bytearray()  # the reply so far: this loop is its own (trivial) framer
    serial = SerialPort(str(port), line.baudrate, bytesize=line.bytesize, parity=line.parity,
                        stopbits=line.stopbits, on_bytes=got.extend)  # fmt: skip
    serial.open()
    loop = asyncio.get_running_loop()
    done = errors = 0
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            for frame, expected in frames:
                got.clear()
                await serial.write(frame, 1.0)
                deadline = loop.time() + line.wire_time(len(frame)) + 0.5
                while len(got) < expected and loop.time() < deadline:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(deadline - loop.time()):
                            await serial.wait()
                errors += len(got) != expected
                done += 1
                await asyncio.sleep(line.standard_gap)
    finally:
        serial.close()
    wall = time.perf_counter() - started
    ceiling = line_budget(line, sizes)
    return Run("bare", done, done / len(frames), len(frames), wall, float("nan"), errors, ceiling)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baud", type=int, default=19200)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))

    line = LineFormat(args.baud, parity="N", stopbits=2)  # 11 bits, as 8E1; ptys lack parity
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            Cable(Path(tmp), line=line) as cable,
            JunctionCabinet(cable.device_end, line=line) as cabinet,
        ):
            planned = await drive("planned", cabinet, cable.gateway_end, False, args.seconds)
            naive = await drive("per point", cabinet, cable.gateway_end, True, args.seconds)
            floor = await bare(cabinet, cable.gateway_end, line, args.seconds)

    ceiling = planned.ceiling
    print(f"line {line} ({line.bits_per_char} bits a character, paced by the relay), "
          f"gap {ceiling.gap * 1000:.3f} ms; 2 traffic controllers + 1 energy meter, "
          f"{args.seconds:g} s a run")  # fmt: skip
    print(f"the line's ceiling for the planned cycle: {ceiling.cycle_seconds * 1000:.1f} ms "
          f"a cycle, {ceiling.max_transactions_per_s:.1f} tx/s")  # fmt: skip
    print(f"{'run':<10} {'tx/cycle':>8} {'minimum':>7} {'cycles/s':>9} {'tx/s':>7} "
          f"{'ceiling':>8} {'of it':>6} {'busy':>6} {'errors':>6}")  # fmt: skip
    for run in (planned, naive, floor):
        top = run.ceiling.max_transactions_per_s
        busy = f"{run.busy:.0%}" if run.busy == run.busy else "-"
        print(f"{run.label:<10} {run.per_cycle:>8} {planned.per_cycle:>7} "
              f"{run.cycles_per_s:>9.2f} {run.tx_per_s:>7.1f} {top:>8.1f} "
              f"{run.tx_per_s / top:>6.0%} {busy:>6} {run.errors:>6}")  # fmt: skip
    print(f"ratios: planned/ceiling tx/s x{planned.tx_per_s / ceiling.max_transactions_per_s:.2f}, "
          f"planned/bare tx/s x{planned.tx_per_s / floor.tx_per_s:.2f}, "
          f"planned/per-point cycles/s x{planned.cycles_per_s / naive.cycles_per_s:.2f} "
          f"({naive.per_cycle / planned.per_cycle:.0f}x fewer transactions a cycle)")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
