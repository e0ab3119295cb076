"""Per-device health, the same for every driver: every failure counted, the first
of an episode logged loudly and the rest quietly until the device recovers, and
each state change reported to the caller, which raises or clears the
`device.unreachable` event built by `unreachable_event`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import structlog

from cityedge.sdk.model import DeviceHealth, DeviceState, Event, Severity, now_wall

log = structlog.get_logger(__name__)

UNREACHABLE_EVENT = "device.unreachable"
"""Event kind raised (active) when a device goes DOWN, cleared when it answers again."""

NOISE_QUIET = 60.0
"""Seconds without bad input after which the next bad input is logged loudly again."""


class HealthTracker:
    """One device's `DeviceHealth` and the log discipline around it.

    `kind` prefixes the log events (`modbus.device_failing`, `ascii.bad_input`);
    `where` says which port or endpoint, logged under `where_key`, so a
    technician knows which cable or address to look at.
    """

    def __init__(
        self,
        kind: str,
        device: str,
        driver: str,
        where: str,
        *,
        where_key: str = "port",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kind = kind
        self.where = where
        self._where_key = where_key
        self._clock = clock
        self.health = DeviceHealth(device=device, driver=driver)
        self._failing_since: float | None = None
        self._failures = 0  # since the first failure of the current episode
        self._last_noise: float | None = None  # clock time of the last bad input
        self.down_polls = 0  # consecutive settles in state DOWN (drives the poll backoff)

    @property
    def device(self) -> str:
        return self.health.device

    @property
    def state(self) -> DeviceState:
        return self.health.state

    def sent(self) -> None:
        self.health.requests += 1

    def answered(self, latency_ms: float | None = None) -> None:
        self.health.last_seen = now_wall()
        if latency_ms is not None:
            self.health.latency_ms = round(latency_ms, 3)

    def failed(self, reason: str, detail: str) -> None:
        """A failure of the device or its line: counted, logged loudly once per episode."""
        self.health.count_error(reason)
        self._failures += 1
        event = f"{self.kind}.device_failing"
        if self._failing_since is None:
            self._failing_since = now_wall()
            log.warning(event, device=self.device, reason=reason, detail=detail,
                        **{self._where_key: self.where})  # fmt: skip
        else:
            log.debug(event, device=self.device, reason=reason, detail=detail)

    def bad_input(self, reason: str, detail: str) -> None:
        """Noise on a line that otherwise works (bad checksum, garbage): every one
        counted; logged loudly once, then quietly until the line has been clean for
        `NOISE_QUIET` seconds — a receiver that garbles one sentence a second must not
        fill the journal, nor hide a new burst of noise an hour later."""
        self.health.count_error(reason)
        now = self._clock()
        loud = self._last_noise is None or now - self._last_noise > NOISE_QUIET
        self._last_noise = now
        event = f"{self.kind}.bad_input"
        if loud:
            log.warning(event, device=self.device, reason=reason, detail=detail,
                        **{self._where_key: self.where})  # fmt: skip
        else:
            log.debug(event, device=self.device, reason=reason, detail=detail)

    def settle(self, state: DeviceState, detail: str | None = None) -> DeviceState | None:
        """Record the device's state now; returns the previous state if it changed."""
        self.down_polls = self.down_polls + 1 if state is DeviceState.DOWN else 0
        if state is DeviceState.UP and self._failing_since is not None:
            log.info(f"{self.kind}.device_recovered", device=self.device, failures=self._failures,
                     after_s=round(now_wall() - self._failing_since, 3))  # fmt: skip
            self._failing_since = None
            self._failures = 0
        self.health.detail = detail
        previous = self.health.state
        if state is previous:
            return None
        self.health.state = state
        self.health.since = now_wall()
        return previous

    def snapshot(self) -> DeviceHealth:
        return replace(self.health, errors=dict(self.health.errors))


def unreachable_event(
    source: str, state: DeviceState, previous: DeviceState | None, data: dict[str, Any]
) -> Event | None:
    """The event a settled state change makes: raised going DOWN, cleared leaving it;
    None when there was no change, or one between UP and DEGRADED."""
    if previous is None or DeviceState.DOWN not in (state, previous):
        return None
    return Event(UNREACHABLE_EVENT, source=source, ts=now_wall(), severity=Severity.WARNING,
                 active=state is DeviceState.DOWN, data=data)  # fmt: skip
