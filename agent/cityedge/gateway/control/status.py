"""The status read-model: what the CLI, the maintenance page and `/metrics` are told.

Frozen dataclasses, built by `cityedge.gateway.control.snapshot` in the agent
and read back by the CLI from the control socket's JSON. A field's name is its
JSON key and the fields' order is the keys' order (docs/operations.md lists
them; the socket's answers must not change shape), so `to_json()` and
`from_json()` are the codec's, not hand-written per class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from cityedge.gateway.control import codec
from cityedge.gateway.diagnostics.clock import ClockState
from cityedge.sdk.model import Value

__all__ = [
    "ClockState",
    "DeviceCounts",
    "DeviceStatus",
    "DriverStatus",
    "GatewayId",
    "HealthStatus",
    "OutboxStatus",
    "OverrideStatus",
    "Shape",
    "Status",
    "TaskStatus",
    "UplinkStatus",
]


class Shape:
    """JSON both ways for the dataclasses below (no state of its own)."""

    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = codec.encode(self)
        return data

    @classmethod
    def from_json(cls, data: object) -> Self:
        """Raises `codec.ShapeError` (a ValueError) naming the first field that does not fit."""
        return codec.decode(cls, data)


@dataclass(frozen=True, slots=True)
class GatewayId(Shape):
    id: str
    site: str


@dataclass(frozen=True, slots=True)
class UplinkStatus(Shape):
    state: str  # LinkState's value: connecting, up, down, stopped
    since: float
    broker: str  # host:port
    tls: bool
    connects: int
    failures: int
    last_error: str | None
    messages_sent: int
    entries_sent: int
    historical_sent: int
    commands_received: int
    flaps: int = 0  # sessions dropped within seconds of coming up (see reconnect.STABLE_SESSION_S)


@dataclass(frozen=True, slots=True)
class OutboxStatus(Shape):
    rows: Mapping[str, int]  # waiting, by priority name, in priority order
    depth: int  # rows plus entries not yet committed
    bytes: int
    oldest_ts: float | None
    oldest_age: float | None
    sealed_unacked: int
    last_seq: int
    pending: int
    evicted: Mapping[str, int]
    commits: int
    rows_committed: int
    disk_full: bool
    set_aside: str | None


@dataclass(frozen=True, slots=True)
class HealthStatus(Shape):
    """One device's health as its driver keeps it (the `forwarders` answer)."""

    device: str
    driver: str
    state: str  # DeviceState's value
    since: float | None
    last_seen: float | None
    latency_ms: float | None
    requests: int
    errors: Mapping[str, int]  # by reason
    error_total: int
    detail: str | None


@dataclass(frozen=True, slots=True)
class DeviceStatus(HealthStatus):
    """A row of the `devices` answer: the health, and the device's type from the catalogue."""

    type: str | None  # None: the driver reports a device its catalogue does not have


@dataclass(frozen=True, slots=True)
class DriverStatus(Shape):
    name: str
    kind: str | None
    running: bool
    restarts: int
    last_error: str | None
    devices: int
    states: Mapping[str, int]  # device count by state, only states some device is in


@dataclass(frozen=True, slots=True)
class TaskStatus(Shape):
    name: str
    running: bool
    restarts: int
    last_error: str | None
    last_error_at: float | None


@dataclass(frozen=True, slots=True)
class DeviceCounts(Shape):
    """Devices by state; one field per DeviceState, in its order (a test holds them equal)."""

    total: int
    unknown: int
    up: int
    degraded: int
    down: int


@dataclass(frozen=True, slots=True)
class OverrideStatus(Shape):
    """An override in force: the kept `Override`, and how long it has left."""

    device: str
    point: str
    value: Value
    previous: Value
    started: float
    until: float
    user: str
    uid: int | None
    restore_failures: int
    last_error: str | None
    next_attempt: float
    remaining: float
    restoring: bool  # its time is up and the previous value is not back yet


@dataclass(frozen=True, slots=True)
class Status(Shape):
    """The `status` answer."""

    gateway: GatewayId
    version: str
    started: float
    uptime: float
    config_digest: str
    uplink: UplinkStatus
    outbox: OutboxStatus
    drivers: tuple[DriverStatus, ...]
    devices: DeviceCounts
    clock: ClockState
    overrides: tuple[OverrideStatus, ...]
    tasks: tuple[TaskStatus, ...]
