"""The few plain data types every part of the agent meets in.

Drivers produce `Reading` and `Event`; the pipeline and the outbox carry them;
the uplink turns them into signed messages. Commands arrive as `Command` and
leave as `CommandResult`. Nothing here knows about MQTT, SQLite or a protocol.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Any

Value = bool | int | float | str
"""A point's value as it travels: a number, a flag, or a short text (panel message)."""


class Priority(IntEnum):
    """Delivery and eviction order in the outbox: higher goes first, is evicted last."""

    TELEMETRY = 1
    EVENT = 2
    ALARM = 3  # alarms and command results

    @property
    def label(self) -> str:
        """The word reports and metrics show: `telemetry`, `event`, `alarm`."""
        return self.name.lower()


# Number -> label, for rows read back from a file as plain integers.
PRIORITY_NAMES: Mapping[int, str] = MappingProxyType({p.value: p.label for p in Priority})


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ALARM = "alarm"


class Quality(StrEnum):
    GOOD = "good"
    CLOCK_UNSYNCED = "clock-unsynced"  # taken while the wall clock was not trusted
    SUBSTITUTED = "substituted"  # e.g. a local override is in force


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one point of one device, at one time (unix seconds)."""

    device: str
    point: str
    value: Value
    ts: float
    unit: str | None = None
    quality: Quality = Quality.GOOD


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened: an alarm raised or cleared, a fault, an eviction.

    `kind` is dotted and stable (`lamppost.lamp_failure`, `outbox.evicted`);
    `active` is True when an alarm is raised, False when it clears, None for
    one-off events.
    """

    kind: str
    source: str
    ts: float
    severity: Severity = Severity.INFO
    active: bool | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def priority(self) -> Priority:
        return Priority.ALARM if self.severity is Severity.ALARM else Priority.EVENT


Emit = Callable[[Sequence[Reading | Event]], Awaitable[None]]
"""How a driver hands its readings and events to the agent. Awaiting it is how
backpressure reaches a driver: when the agent's queue is full, emit waits."""


class PointAccess(StrEnum):
    READ = "r"
    READ_WRITE = "rw"


@dataclass(frozen=True, slots=True)
class PointInfo:
    """What the agent may know of a point without knowing its protocol."""

    name: str
    kind: str  # "bool" | "int" | "float" | "text"
    unit: str | None = None
    access: PointAccess = PointAccess.READ
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Value, ...] | None = None  # enumerations such as traffic plans
    deadband: float | None = None


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A configured device as the core sees it: its type and its points."""

    name: str
    device_type: str  # profile / codec name, e.g. "lamppost", "energy-meter"
    driver: str  # instance name of the driver that owns it
    points: dict[str, PointInfo]


class DeviceState(StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DEGRADED = "degraded"  # answers, but some requests fail
    DOWN = "down"


@dataclass(slots=True)
class DeviceHealth:
    """Per-device health, kept by its driver and read by status and diagnostics."""

    device: str
    driver: str
    state: DeviceState = DeviceState.UNKNOWN
    since: float | None = None
    last_seen: float | None = None
    latency_ms: float | None = None
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # by reason: timeout, crc, exception…
    detail: str | None = None

    def count_error(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1


# --- errors at the driver boundary -------------------------------------------------


class DeviceError(Exception):
    """A device-level failure, translated from the protocol library at its edge."""


class UnknownDevice(DeviceError):
    pass


class UnknownPoint(DeviceError):
    pass


class PointNotWritable(DeviceError):
    pass


class DeviceUnreachable(DeviceError):
    """Transient: timeout, connection refused, port gone. Worth retrying later."""


class DeviceRejected(DeviceError):
    """Permanent for this request: the device answered with an exception."""


class InvalidValue(DeviceError):
    """The value cannot be encoded for the point (type or range)."""


# --- commands ---------------------------------------------------------------------


class ResultCode(StrEnum):
    """Outcome of a command, in the order the checks run (docs/protocol.md §4.1, §8.2).
    The one registry of result codes: the doc's table is checked against it."""

    BUSY = "busy"  # not taken: the gateway could not hold it now; send it again
    TOO_LARGE = "too-large"
    MALFORMED = "malformed"
    UNSUPPORTED_VERSION = "unsupported-version"
    UNKNOWN_KEY = "unknown-key"
    BAD_SIGNATURE = "bad-signature"
    WRONG_TARGET = "wrong-target"
    NOT_YET_VALID = "not-yet-valid"
    EXPIRED = "expired"
    REPLAYED = "replayed"
    UNKNOWN_DEVICE = "unknown-device"
    UNKNOWN_POINT = "unknown-point"
    DENIED = "denied"
    UNREACHABLE = "unreachable"
    TIMED_OUT = "timed-out"
    REJECTED = "rejected"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    target: str  # gateway id
    device: str | None
    op: str  # "write", "ping", "rebirth", "diagnostics", "lighting.program", …
    args: dict[str, Any]
    issued: float
    expires: float
    key_id: str


@dataclass(frozen=True, slots=True)
class CommandResult:
    command_id: str
    code: ResultCode
    detail: str = ""
    readback: Value | None = None
    readback_matched: bool | None = None
    data: dict[str, Any] = field(default_factory=dict)
    # The first 16 bytes of SHA-256 over the command's payload as received: what the
    # result answers (docs/protocol.md §8.3). Set by the command handler, not operations.
    command_digest: bytes = b""


def now_wall() -> float:
    """Wall-clock time; one place so tests and clock-fault handling can find it."""
    return time.time()
