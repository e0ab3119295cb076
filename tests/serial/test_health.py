"""Health bookkeeping of serial devices: every failure counted, one loud log per episode."""

from __future__ import annotations

from structlog.testing import capture_logs

from cityedge.sdk.health import NOISE_QUIET, HealthTracker
from cityedge.sdk.model import DeviceState


def test_failures_counted_logged_loudly_once_per_episode_and_recovery_logged() -> None:
    tracker = HealthTracker("ascii", "panel", "panels", "/dev/ttyUSB1")
    with capture_logs() as logs:
        for _ in range(5):
            tracker.failed("timeout", "no answer")
        assert tracker.settle(DeviceState.DOWN, "no answer") is DeviceState.UNKNOWN
        assert tracker.settle(DeviceState.DOWN, "no answer") is None
        assert tracker.down_polls == 2
        assert tracker.settle(DeviceState.UP) is DeviceState.DOWN
        tracker.failed("timeout", "again")
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("ascii.device_failing", "warning"),
        *[("ascii.device_failing", "debug")] * 4,
        ("ascii.device_recovered", "info"),
        ("ascii.device_failing", "warning"),  # a new episode is loud again
    ]
    snapshot = tracker.snapshot()
    assert snapshot.errors == {"timeout": 6} and snapshot.state is DeviceState.UP
    assert snapshot.detail is None and tracker.down_polls == 0
    snapshot.errors["timeout"] = 0
    assert tracker.snapshot().errors == {"timeout": 6}  # a copy, not the live counters


def test_noise_is_loud_again_only_after_a_quiet_spell() -> None:
    times = iter([0.0, 1.0, 30.0, 30.0 + NOISE_QUIET + 1, 100.0])
    tracker = HealthTracker("nmea", "gps", "gps", "/dev/ttyUSB0", clock=lambda: next(times))
    with capture_logs() as logs:
        for _ in range(5):
            tracker.bad_input("checksum", "checksum 23 given, 03 computed")
    assert [e["log_level"] for e in logs] == ["warning", "debug", "debug", "warning", "debug"]
    assert tracker.snapshot().errors == {"checksum": 5}
