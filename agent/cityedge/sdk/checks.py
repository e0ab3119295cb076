"""Diagnostic checks: what one says (✔ / ⚠ / ✘, one line of detail, one line of
remedy), and what a driver's own checks may know of the gateway around them.

A driver package may have a `checks` module with
`async def checks(sections, ctx: CheckEnv) -> list[CheckResult]`: the checks of
its `[[drivers.<kind>]]` tables, in config order. `cityedge check` runs them with
or without a running agent (`ctx.agent()` says which), so they are built from the
config sections, not from a running driver.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Protocol

from cityedge.sdk.driver import DriverEnv
from cityedge.sdk.model import (
    DeviceRejected,
    DeviceUnreachable,
    InvalidValue,
    PointNotWritable,
    UnknownDevice,
    UnknownPoint,
)


class Status(IntEnum):
    """Ordered by gravity: the exit status of `cityedge check` is the worst one."""

    OK = 0
    WARN = 1
    FAIL = 2

    @property
    def mark(self) -> str:
        return _MARKS[self]

    @property
    def label(self) -> str:
        return self.name.lower()


_MARKS = {Status.OK: "✔", Status.WARN: "⚠", Status.FAIL: "✘"}
_BY_LABEL = {s.label: s for s in Status}


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str  # dotted and stable: "broker.tls", "modbus.lamppost-003"
    status: Status
    detail: str
    remedy: str = ""  # empty when there is nothing to do

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.label,
            "detail": self.detail,
            "remedy": self.remedy,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckResult:
        """Read back what `to_json` wrote (a recorded check); ValueError names the field."""
        if not isinstance(data, Mapping):
            raise ValueError(f"expected an object, got {type(data).__name__}")
        fields = {}
        for key in ("name", "status", "detail", "remedy"):
            value = data.get(key, "" if key == "remedy" else None)
            if not isinstance(value, str) or len(value) > 2000:
                raise ValueError(f"{key}: expected text of at most 2000 characters")
            fields[key] = value
        status = _BY_LABEL.get(fields["status"])
        if status is None:
            raise ValueError(
                f"status: expected one of {sorted(_BY_LABEL)}, got {fields['status']!r}"
            )
        return cls(fields["name"], status, fields["detail"], fields["remedy"])


def ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Status.OK, detail)


def warn(name: str, detail: str, remedy: str) -> CheckResult:
    return CheckResult(name, Status.WARN, detail, remedy)


def fail(name: str, detail: str, remedy: str) -> CheckResult:
    return CheckResult(name, Status.FAIL, detail, remedy)


def worst(results: Iterable[CheckResult]) -> Status:
    return max((r.status for r in results), default=Status.OK)


def failure_text(exc: BaseException, timeout: float) -> str:
    """A device call's failure (or timeout) as a technician reads it."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, UnknownDevice | UnknownPoint):
        return f"unknown: {exc}"
    if isinstance(exc, PointNotWritable):
        return f"not writable: {exc}"
    if isinstance(exc, InvalidValue):
        return f"invalid value: {exc}"
    if isinstance(exc, DeviceUnreachable):
        return f"unreachable: {exc}"
    if isinstance(exc, DeviceRejected):
        return f"rejected by the device: {exc}"
    return str(exc) or type(exc).__name__


class AgentError(Exception):
    """The running agent refused or could not answer; the text says why."""


class RunningAgent(Protocol):
    """The agent that runs on this gateway, asked through its control socket.

    `ask(op, **arguments)` takes the socket's operations (docs/operations.md), e.g.
    `ask("read", device=…, points=[…], timeout=…)`; raises `AgentError`."""

    async def ask(self, op: str, **arguments: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class CheckEnv:
    """What a driver's checks may know: where its state and profiles are (to build a
    driver of its own when no agent runs), the limits to apply, the running agent."""

    env: DriverEnv
    agent: Callable[[], Awaitable[RunningAgent | None]]  # None: no agent answers
    device_timeout: float = 3.0  # one read of one field device
    silence_limit: float = 300.0  # how long a radio peer may stay unheard
    sysfs: Path = Path("/sys")
    now: Callable[[], float] = time.time
