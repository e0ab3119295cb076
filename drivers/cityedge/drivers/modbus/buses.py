"""The buses a Modbus driver owns, and their bookkeeping.

One bus, one owner: every device reached through the same TCP endpoint shares
one `Bus` (one connection, one lock), so transactions never interleave on it.
An RTU table's serial line is a `SerialBus`: its link, what it can carry
(`budget`), what its devices ask of it (`demand`), and its own health entry
(`<driver>:bus`), which says whether the port can be used and, in `detail`,
how much of its budget the line spends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import structlog

from cityedge.drivers.modbus.budget import LineBudget, LineReport, line_budget, read_frame_sizes
from cityedge.drivers.modbus.config import RtuSection, TcpDevice
from cityedge.drivers.modbus.link import Link
from cityedge.drivers.modbus.rtu import RtuLink
from cityedge.drivers.modbus.tcp import TcpLink
from cityedge.drivers.serialline.port import PortError
from cityedge.sdk.model import DeviceHealth, DeviceState, now_wall

log = structlog.get_logger(__name__)

BUS_SUFFIX = ":bus"
"""A serial line's own health entry is `<driver name>:bus` (no device name has a colon)."""


@dataclass(slots=True)
class Bus:
    """One transport and the lock that makes its transactions one at a time."""

    link: Link
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def tcp_buses(devices: Sequence[TcpDevice]) -> dict[tuple[str, int], Bus]:
    """One bus per TCP endpoint; its connect timeout is the longest of its devices'."""
    timeouts: dict[tuple[str, int], float] = {}
    for device in devices:
        timeouts[device.endpoint] = max(timeouts.get(device.endpoint, 0.0), device.timeout)
    return {ep: Bus(TcpLink(ep[0], ep[1], timeout=t)) for ep, t in timeouts.items()}


@dataclass(slots=True)
class SerialBus:
    """The serial line of an RTU table: its link, what it can carry, its own health."""

    link: RtuLink
    budget: LineBudget
    demand: float  # transactions/s the devices' poll intervals ask for
    reopen_max: float
    health: DeviceHealth
    down: PortError | None = None  # why the port cannot be used, while it cannot

    @classmethod
    def of(cls, section: RtuSection, driver: str) -> SerialBus:
        link = RtuLink(section.port, section.line, gap=section.frame_gap)
        requests = [r for d in section.devices for r in d.profile.requests]
        budget = line_budget(section.line, [read_frame_sizes(r) for r in requests], gap=link.gap)
        demand = sum(len(d.profile.requests) / d.poll_interval for d in section.devices)
        health = DeviceHealth(device=f"{driver}{BUS_SUFFIX}", driver=driver)
        return cls(link, budget, demand, section.reopen_max, health)

    def went_down(self, exc: PortError, driver: str) -> None:
        """The port is lost or will not open: counted, and logged loudly once."""
        health = self.health
        health.count_error(exc.reason)
        if self.down is None:
            log.warning("modbus.line_down", driver=driver, port=exc.port, why=exc.reason,
                        detail=exc.detail)  # fmt: skip
            health.state, health.since = DeviceState.DOWN, now_wall()
        else:
            log.debug("modbus.line_down", driver=driver, port=exc.port, why=exc.reason)
        self.down = exc
        health.detail = f"{exc}; reopening (at most every {self.reopen_max:g} s)"

    def came_up(self, driver: str) -> None:
        health = self.health
        if self.down is not None:
            log.info("modbus.line_up", driver=driver, port=self.link.endpoint,
                     after_s=round(now_wall() - (health.since or now_wall()), 3),
                     failures=sum(health.errors.values()))  # fmt: skip
        self.down = None
        health.state, health.since, health.detail = DeviceState.UP, now_wall(), None

    def report(self) -> LineReport:
        return self.link.meter.report(self.budget, self.demand)

    def entry(self, last_seen: float | None) -> DeviceHealth:
        """The line's own health entry: state of the port, and its budget in `detail`;
        `last_seen` is when any of its devices last answered."""
        report = self.report()
        health = replace(self.health, errors=dict(self.health.errors))
        health.requests = report.transactions
        noise = self.link.stray + self.link.overflow
        if noise:
            health.errors["stray_bytes"] = noise
        health.last_seen = last_seen
        budget = report.describe(self.link.line)
        health.detail = budget if self.down is None else f"{self.health.detail} | {budget}"
        return health
