"""The agent's state as the status read-model: one view for the CLI, the page and metrics.

Builds the dataclasses of `cityedge.gateway.control.status` from an `AgentView`.
Each function only reads; none of them waits on the outside world except
`ClockWatch`, which asks the system in a thread and caches the answer.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cityedge.gateway.control.status import (
    DeviceCounts,
    DeviceStatus,
    DriverStatus,
    GatewayId,
    HealthStatus,
    OutboxStatus,
    OverrideStatus,
    Status,
    TaskStatus,
    UplinkStatus,
)
from cityedge.gateway.diagnostics.clock import ClockSource, ClockState, system_clock
from cityedge.sdk import __version__
from cityedge.sdk.model import PRIORITY_NAMES, DeviceHealth, DeviceState

if TYPE_CHECKING:
    from cityedge.gateway.control.overrides import Overrides
    from cityedge.gateway.control.view import AgentView
    from cityedge.gateway.outbox import OutboxStats

CLOCK_CACHE_SECONDS = 30.0


HealthFields = tuple[
    str, str, str, float | None, float | None, float | None, int, dict[str, int], int, str | None
]


def health(h: DeviceHealth) -> HealthStatus:
    return HealthStatus(*_health_fields(h))


def _health_fields(h: DeviceHealth) -> HealthFields:
    # HealthStatus's fields in order, for it and DeviceStatus alike (mypy checks the order).
    # The errors are copied: the driver keeps counting into its own dict.
    errors = dict(h.errors)
    return (
        h.device,
        h.driver,
        str(h.state),
        h.since,
        h.last_seen,
        h.latency_ms,
        h.requests,
        errors,
        sum(errors.values()),
        h.detail,
    )


def outbox(stats: OutboxStats, now: float | None = None) -> OutboxStatus:
    now = time.time() if now is None else now
    return OutboxStatus(
        rows={PRIORITY_NAMES.get(p, str(p)): n for p, n in sorted(stats.rows.items())},
        depth=sum(stats.rows.values()) + stats.pending,
        bytes=stats.bytes,
        oldest_ts=stats.oldest_ts,
        oldest_age=None if stats.oldest_ts is None else max(0.0, now - stats.oldest_ts),
        sealed_unacked=stats.sealed_unacked,
        last_seq=stats.last_seq,
        pending=stats.pending,
        evicted=dict(stats.evicted),
        commits=stats.commits,
        rows_committed=stats.rows_committed,
        disk_full=stats.disk_full,
        set_aside=stats.set_aside,
    )


def driver_kinds(agent: AgentView) -> dict[str, str]:
    return {section.name: kind for kind, section in agent.config.driver_sections()}


def devices(agent: AgentView) -> list[DeviceStatus]:
    catalogue = agent.devices()
    out = []
    for h in agent.device_health():
        info = catalogue.get(h.device)
        out.append(DeviceStatus(*_health_fields(h), type=info.device_type if info else None))
    return sorted(out, key=lambda d: d.device)


def drivers(agent: AgentView, health: list[DeviceHealth]) -> list[DriverStatus]:
    kinds = driver_kinds(agent)
    by_driver: dict[str, Counter[str]] = {name: Counter() for name in agent.drivers}
    for h in health:
        by_driver.setdefault(h.driver, Counter())[str(h.state)] += 1
    out = []
    for name, states in sorted(by_driver.items()):
        task = agent.tasks.get(f"driver:{name}")
        out.append(
            DriverStatus(
                name=name,
                kind=kinds.get(name),
                running=task.running if task else False,
                restarts=task.restarts if task else 0,
                last_error=task.last_error if task else None,
                devices=sum(states.values()),
                states=dict(states),
            )
        )
    return out


def uplink(agent: AgentView) -> UplinkStatus:
    stats = agent.uplink.stats
    cfg = agent.config.uplink
    return UplinkStatus(
        state=str(stats.state),
        since=stats.since,
        broker=f"{cfg.host}:{cfg.port}",
        tls=cfg.tls,
        connects=stats.connects,
        failures=stats.failures,
        last_error=stats.last_error,
        messages_sent=stats.messages_sent,
        entries_sent=stats.entries_sent,
        historical_sent=stats.historical_sent,
        commands_received=stats.commands_received,
        flaps=stats.flaps,
    )


def tasks(agent: AgentView) -> list[TaskStatus]:
    return [
        TaskStatus(
            name=t.name,
            running=t.running,
            restarts=t.restarts,
            last_error=t.last_error,
            last_error_at=t.last_error_at,
        )
        for t in sorted(agent.tasks.values(), key=lambda t: t.name)
    ]


def device_counts(health: list[DeviceHealth]) -> DeviceCounts:
    counts = {str(s): 0 for s in DeviceState}
    for h in health:
        counts[str(h.state)] += 1
    return DeviceCounts(total=len(health), **counts)


def overrides(kept: Overrides) -> list[OverrideStatus]:
    """The overrides in force, soonest to end first."""
    now = kept.now()
    return [
        OverrideStatus(
            device=o.device,
            point=o.point,
            value=o.value,
            previous=o.previous,
            started=o.started,
            until=o.until,
            user=o.user,
            uid=o.uid,
            restore_failures=o.restore_failures,
            last_error=o.last_error,
            next_attempt=o.next_attempt,
            remaining=max(0.0, o.until - now),
            restoring=o.until <= now,
        )
        for o in kept.active()
    ]


def status(agent: AgentView, clock: ClockState, in_force: Sequence[OverrideStatus] = ()) -> Status:
    now = time.time()
    health = agent.device_health()
    return Status(
        gateway=GatewayId(id=agent.config.gateway.id, site=agent.config.gateway.site),
        version=__version__,
        started=agent.started,
        uptime=now - agent.started,
        config_digest=agent.config_digest,
        uplink=uplink(agent),
        outbox=outbox(agent.outbox.stats(), now),
        drivers=tuple(drivers(agent, health)),
        # the devices `read` knows: a radio link (a LoRaWAN forwarder) has health, not a place here
        devices=device_counts([h for h in health if h.device in agent.devices()]),
        clock=clock,
        overrides=tuple(in_force),
        tasks=tuple(tasks(agent)),
    )


@dataclass(slots=True)
class ClockWatch:
    """The clock's state, asked at most every CLOCK_CACHE_SECONDS (timedatectl is slow)."""

    source: ClockSource = system_clock
    _state: ClockState | None = None
    _at: float = 0.0

    async def state(self) -> ClockState:
        now = time.monotonic()
        if self._state is None or now - self._at > CLOCK_CACHE_SECONDS:
            self._state = await asyncio.to_thread(self.source)
            self._at = now
        return self._state

    def last(self) -> ClockState:
        return self._state or ClockState(None, "none", "not asked yet")
