"""Per-device health: counts every failure, logs the first loudly and the rest
quietly until the device recovers, and says when its state changes."""

from __future__ import annotations

from dataclasses import replace

import structlog

from cityedge.sdk.model import DeviceHealth, DeviceState, now_wall

log = structlog.get_logger(__name__)


class HealthTracker:
    """Keeps one device's `DeviceHealth` and the log discipline around it."""

    def __init__(self, device: str, driver: str, endpoint: str) -> None:
        self.health = DeviceHealth(device=device, driver=driver)
        self.endpoint = endpoint
        self._failing_since: float | None = None
        self._failures = 0  # since the first failure of the current episode
        self.down_polls = 0  # consecutive polls that found the device unreachable

    def sent(self) -> None:
        self.health.requests += 1

    def answered(self, latency_ms: float) -> None:
        self.health.last_seen = now_wall()
        self.health.latency_ms = round(latency_ms, 3)

    def failed(self, reason: str, detail: str) -> None:
        self.health.count_error(reason)
        self._failures += 1
        if self._failing_since is None:
            self._failing_since = now_wall()
            log.warning(
                "modbus.device_failing",
                device=self.health.device,
                endpoint=self.endpoint,
                reason=reason,
                detail=detail,
            )
        else:
            log.debug("modbus.device_failing", device=self.health.device, reason=reason)

    def settle(self, state: DeviceState, detail: str | None = None) -> DeviceState | None:
        """Record the outcome of one poll; returns the previous state if it changed."""
        self.down_polls = self.down_polls + 1 if state is DeviceState.DOWN else 0
        if state is DeviceState.UP and self._failing_since is not None:
            log.info(
                "modbus.device_recovered",
                device=self.health.device,
                failures=self._failures,
                after_s=round(now_wall() - self._failing_since, 3),
            )
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
