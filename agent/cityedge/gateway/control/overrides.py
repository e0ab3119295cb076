"""Local overrides: a technician's write, time-limited, through the command post's policy.

`cityedge write lamppost-007 dimming 100 --for 30m` is checked by the same
`Policy.check_write` as a signed command, remembers the value it replaces,
writes, and puts the previous value back when the time is up. Every override
is audited with the local user and reported to the command post as a
`local.override` event (active when it starts, cleared when it ends).

On a point a lighting program drives, an override holds until its time is up or
the program's next step, whichever comes first: the step supersedes it (reported,
nothing restored: the program's level is the normal from then on).

Overrides in force are kept in `<state_dir>/overrides.json`, so an agent that
restarts mid-override still restores the previous value on time (or at once,
if the time passed while it was down). A restore that fails (device down) is
retried with a backoff until it succeeds: the street must come back to normal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import structlog

from cityedge.gateway.control.peer import Peer
from cityedge.gateway.control.protocol import ControlError
from cityedge.gateway.control.values import ValueProblem, format_duration, parse_value
from cityedge.gateway.control.view import DeviceAccess
from cityedge.sdk.atomic import write_atomic
from cityedge.sdk.checks import failure_text
from cityedge.sdk.model import (
    DeviceError,
    DeviceInfo,
    DeviceRejected,
    Event,
    PointInfo,
    Severity,
    Value,
)

log = structlog.get_logger(__name__)

FILE_NAME = "overrides.json"  # in the state dir
EVENT_KIND = "local.override"
DENIED_KIND = "local.write_denied"
MIN_DURATION = 1.0
MAX_DURATION = 24 * 3600.0  # an override is for a job on site, not a new normal
DEVICE_TIMEOUT = 10.0
RESTORE_RETRY_MIN = 5.0
RESTORE_RETRY_MAX = 120.0
MAX_TICK = 1.0  # how late a restore may be, at worst


@dataclass(slots=True)
class Override:
    device: str
    point: str
    value: Value
    previous: Value
    started: float
    until: float
    user: str
    uid: int | None
    restore_failures: int = 0
    last_error: str | None = None
    next_attempt: float = 0.0
    cleared_by: str | None = None  # who ended it early (`cityedge write --end`), if anyone

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Override:
        if not isinstance(data, dict):
            raise ValueError("expected an object")
        try:
            override = cls(**data)
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        texts = (override.device, override.point, override.user)
        if not all(isinstance(t, str) for t in texts):
            raise ValueError("device, point and user must be text")
        for value in (override.value, override.previous):
            if not isinstance(value, bool | int | float | str):
                raise ValueError("value and previous must be numbers, flags or text")
        if not all(isinstance(t, int | float) for t in (override.started, override.until)):
            raise ValueError("started and until must be times")
        return override


class Overrides:
    """The overrides in force, kept in `path`; `run()` (a supervised task of the
    runtime) puts the previous values back when their time is up."""

    def __init__(
        self,
        agent: DeviceAccess,
        path: Path,
        *,
        device_timeout: float = DEVICE_TIMEOUT,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.agent = agent
        self.path = path
        self.device_timeout = device_timeout
        self.now = now
        self._active: dict[tuple[str, str], Override] = {}
        self._lock = asyncio.Lock()  # one override change at a time: previous values stay right
        self._changed = asyncio.Event()
        self.started_total = 0
        self.restored_total = 0
        self.denied_total = 0
        self._load()

    # --- what status and the maintenance page show --------------------------------------

    def active(self) -> list[Override]:
        return sorted(self._active.values(), key=lambda o: o.until)

    def to_json(self) -> list[dict[str, Any]]:
        now = self.now()
        return [
            {**o.to_json(), "remaining": max(0.0, o.until - now), "restoring": o.until <= now}
            for o in self.active()
        ]

    # --- starting one --------------------------------------------------------------------

    async def start(
        self, device: str, point: str, raw_value: Value, duration: float, peer: Peer
    ) -> dict[str, Any]:
        """Check, remember the current value, write; ControlError says why not."""
        if not (isinstance(duration, int | float) and math.isfinite(duration)):
            raise ControlError("write: 'for' must be a number of seconds")
        if not MIN_DURATION <= duration <= MAX_DURATION:
            raise ControlError(
                f"write: an override lasts {format_duration(MIN_DURATION)} to "
                f"{format_duration(MAX_DURATION)}, got {format_duration(duration)}"
            )
        info, target = self._lookup(device, point)
        try:
            value = parse_value(target, raw_value)
        except ValueProblem as exc:
            raise ControlError(f"bad value for {device}.{exc}") from None
        denied = self.agent.check_write(info.device_type, target, value)
        if denied:
            self.denied_total += 1
            log.warning(
                "control.write_denied",
                device=device,
                point=point,
                value=value,
                reason=denied,
                **peer.audit(),
            )
            self._report(
                DENIED_KIND,
                device,
                Severity.WARNING,
                None,
                {"point": point, "value": value, "reason": denied, **peer.audit()},
            )
            raise ControlError(f"denied by local policy: {denied}")
        async with self._lock:
            key = (device, point)
            earlier = self._active.get(key)
            if earlier is not None:
                previous = earlier.previous  # stacked: the end restores the original value
            else:
                previous = await self._device_call(
                    "read the current value (to restore later) of",
                    device,
                    point,
                    self._read_current(device, point),
                )
            await self._device_call("write", device, point, self.agent.write(device, point, value))
            now = self.now()
            override = Override(
                device, point, value, previous, now, now + duration, peer.who, peer.uid
            )
            self._active[key] = override
            self.started_total += 1
            self._save()
        readback = await self._readback(device, point)
        log.warning(
            "control.override",
            device=device,
            point=point,
            value=value,
            previous=previous,
            seconds=duration,
            **peer.audit(),
        )
        self._report(
            EVENT_KIND,
            device,
            Severity.WARNING,
            True,
            {
                "point": point,
                "value": value,
                "previous": previous,
                "until": override.until,
                "seconds": duration,
                **peer.audit(),
            },
        )
        self._changed.set()
        return {**override.to_json(), "readback": readback, "replaced": earlier is not None}

    async def end(self, device: str, point: str, peer: Peer) -> dict[str, Any]:
        """End an override now (the previous value is restored by the sweeper at once)."""
        override = self._active.get((device, point))
        if override is None:
            raise ControlError(f"no override in force on {device}.{point}")
        override.until = min(override.until, self.now())
        override.next_attempt = 0.0
        override.cleared_by = peer.user
        log.warning("control.override_ended", device=device, point=point, **peer.audit())
        self._save()
        self._changed.set()
        await self.restore_due()
        return override.to_json()

    # --- ending them ---------------------------------------------------------------------

    async def run(self) -> None:
        """Restore every override whose time is up; runs as long as the agent."""
        while True:
            await self.restore_due()
            now = self.now()
            waits = [max(o.until, o.next_attempt) - now for o in self._active.values()]
            delay = min([MAX_TICK, *waits]) if waits else MAX_TICK * 30
            self._changed.clear()
            # asyncio.timeout, not wait_for: on 3.11, wait_for swallows a cancel that
            # lands as its inner wait ends, and the agent's stop waited 5 s for this task.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.05, delay)):
                    await self._changed.wait()

    async def restore_due(self) -> int:
        restored = 0
        for override in list(self._active.values()):
            now = self.now()
            if override.until <= now and override.next_attempt <= now:
                restored += await self._restore(override)
        return restored

    async def _restore(self, override: Override) -> int:
        async with self._lock:
            key = (override.device, override.point)
            if self._active.get(key) is not override:
                return 0
            try:
                async with asyncio.timeout(self.device_timeout):
                    await self.agent.write(override.device, override.point, override.previous)
            except (TimeoutError, DeviceError) as exc:
                reason = failure_text(exc, self.device_timeout)
                first = override.restore_failures == 0
                override.restore_failures += 1
                override.last_error = reason
                retry = min(
                    RESTORE_RETRY_MAX, RESTORE_RETRY_MIN * 2 ** (override.restore_failures - 1)
                )
                override.next_attempt = self.now() + retry
                (log.error if first else log.debug)(
                    "control.restore_failed",
                    device=override.device,
                    point=override.point,
                    error=reason,
                    failures=override.restore_failures,
                    retry_s=retry,
                )
                self._save()
                return 0
            if self._active.pop(key, None) is None:
                return 0  # superseded by a program step while the write was under way
            self.restored_total += 1
            self._save()
        log.warning(
            "control.override_restored",
            device=override.device,
            point=override.point,
            value=override.previous,
            user=override.user,
        )
        self._report(
            EVENT_KIND,
            override.device,
            Severity.WARNING,
            False,
            {
                "point": override.point,
                "value": override.value,
                "previous": override.previous,  # written back: the override is over
                "started": override.started,
                "user": override.user,
                "uid": override.uid,
                "failures": override.restore_failures,
                # how it ended, never a bare flag: a previous value `false` read as a failure
                "ended": "cleared" if override.cleared_by else "expired",
                **({"cleared_by": override.cleared_by} if override.cleared_by else {}),
            },
        )
        return 1

    def superseded(self, device: str, point: str, by: dict[str, Any]) -> bool:
        """A lighting program's step took `device.point` over (`by`: its program and
        level): the override ends without a restore. False when there was none."""
        override = self._active.pop((device, point), None)
        if override is None:
            return False
        self._save()
        self._changed.set()
        log.warning("control.override_superseded", device=device, point=point,
                    value=override.value, user=override.user, by=by)  # fmt: skip
        self._report(
            EVENT_KIND,
            device,
            Severity.WARNING,
            False,
            {
                "point": point,
                "value": override.value,
                "previous": override.previous,
                "started": override.started,
                "user": override.user,
                "uid": override.uid,
                "ended": "superseded",
                "by": by,
            },
        )
        return True

    # --- the agent around it -----------------------------------------------------------

    def _lookup(self, device: str, point: str) -> tuple[DeviceInfo, PointInfo]:
        catalogue = self.agent.devices()
        info = catalogue.get(device)
        if info is None:
            raise ControlError(unknown_device_message(device, catalogue))
        target = info.points.get(point)
        if target is None:
            raise ControlError(unknown_point_message(info, point))
        return info, target

    async def _read_current(self, device: str, point: str) -> Value:
        value = await self.agent.read_point(device, point)
        if value is None:
            raise DeviceRejected(f"{device} returned no value for {point}")
        return value

    async def _device_call(self, what: str, device: str, point: str, call: Any) -> Any:
        try:
            async with asyncio.timeout(self.device_timeout):
                return await call
        except (TimeoutError, DeviceError) as exc:
            raise ControlError(
                f"cannot {what} {device}.{point}: {failure_text(exc, self.device_timeout)}"
            ) from None

    async def _readback(self, device: str, point: str) -> Value | None:
        try:
            async with asyncio.timeout(self.device_timeout):
                return await self.agent.read_point(device, point)
        except (TimeoutError, DeviceError):
            return None

    def _report(
        self, kind: str, device: str, severity: Severity, active: bool | None, data: dict[str, Any]
    ) -> None:
        """An event through the outbox: the command post hears of every local write."""
        self.agent.report(Event(kind, device, time.time(), severity, active, data))

    # --- persistence -----------------------------------------------------------------

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.error("control.overrides_unreadable", path=str(self.path), error=str(exc))
            return
        entries = raw.get("overrides") if isinstance(raw, dict) else None
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            try:
                override = Override.from_json(entry)
            except ValueError as exc:
                log.error(
                    "control.override_unreadable", path=str(self.path), index=i, error=str(exc)
                )
                continue
            override.next_attempt = 0.0
            self._active[(override.device, override.point)] = override
        if self._active:
            log.warning("control.overrides_resumed", count=len(self._active))

    def _save(self) -> None:
        """Atomically (sdk.atomic): a power cut leaves old or new, not half."""
        data = json.dumps({"overrides": [o.to_json() for o in self.active()]}, indent=1)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, data, mode=0o600)
        except OSError as exc:
            log.error("control.overrides_unsaved", path=str(self.path), error=str(exc))


def unknown_device_message(device: str, catalogue: dict[str, DeviceInfo]) -> str:
    import difflib

    near = difflib.get_close_matches(device, list(catalogue), n=3)
    hint = f"; did you mean {', '.join(near)}?" if near else f" ({len(catalogue)} devices known)"
    return f"unknown device {device!r}{hint}"


def unknown_point_message(info: DeviceInfo, point: str) -> str:
    names = sorted(info.points)
    shown = ", ".join(names[:12]) + (", …" if len(names) > 12 else "")
    return f"{info.name} ({info.device_type}) has no point {point!r}; points: {shown}"
