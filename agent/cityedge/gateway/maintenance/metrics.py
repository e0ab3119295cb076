"""Prometheus metrics at `/metrics`, read from the agent's state at scrape time.

A custom collector rather than metric objects updated all over the code: the
agent already keeps every count (outbox, uplink, device health, supervised
tasks), so a scrape takes the same status read-model as the CLI and the page
(`cityedge.gateway.control.snapshot`) and nothing can drift.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

from cityedge.gateway.control import snapshot
from cityedge.gateway.diagnostics.clock import ClockState
from cityedge.sdk.model import PRIORITY_NAMES, DeviceState

if TYPE_CHECKING:
    from cityedge.gateway.control.server import ControlServer
    from cityedge.gateway.control.status import DeviceStatus, Status
    from cityedge.gateway.control.view import AgentView

LINK_STATES = ("connecting", "up", "down", "stopped")
CHECK_VALUES = {"ok": 0, "warn": 1, "fail": 2}
UNASKED = ClockState(None, "none", "no clock source given")


class AgentCollector:
    def __init__(
        self,
        agent: AgentView,
        control: ControlServer | None = None,
        clock: Callable[[], ClockState] | None = None,
    ) -> None:
        self.agent = agent
        self.control = control
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        # Overrides are counted from the control server's own (below), not the status.
        clock = self.clock() if self.clock is not None else UNASKED
        status = snapshot.status(self.agent, clock)
        yield from self._agent(status)
        yield from self._uplink(status)
        yield from self._outbox(status)
        yield from self._devices(status, snapshot.devices(self.agent))
        yield from self._tasks(status)
        yield from self._control()

    def _agent(self, status: Status) -> Iterator[Metric]:
        info = InfoMetricFamily("cityedge", "The agent and the gateway it runs on.")
        info.add_metric(
            [],
            {
                "version": status.version,
                "gateway": status.gateway.id,
                "site": status.gateway.site,
                "config": status.config_digest[:12],
            },
        )
        yield info
        yield GaugeMetricFamily(
            "cityedge_start_time_seconds",
            "When the agent started (unix time).",
            value=status.started,
        )
        if self.clock is not None:
            synced = {True: 1.0, False: 0.0, None: float("nan")}[status.clock.synchronised]
            yield GaugeMetricFamily(
                "cityedge_clock_synchronised",
                "1 when NTP disciplines the clock, 0 when not, NaN unknown.",
                value=synced,
            )

    def _uplink(self, status: Status) -> Iterator[Metric]:
        stats = status.uplink
        state = GaugeMetricFamily(
            "cityedge_uplink_state",
            "The MQTT link's state (1 for the current one).",
            labels=["state"],
        )
        for name in LINK_STATES:
            state.add_metric([name], 1.0 if stats.state == name else 0.0)
        yield state
        yield GaugeMetricFamily(
            "cityedge_uplink_state_since_seconds",
            "When the link entered its current state (unix time).",
            value=stats.since,
        )
        for name, value, doc in (
            ("connects", stats.connects, "Successful connections to the broker."),
            ("failures", stats.failures, "Failed or lost connections."),
            ("messages_sent", stats.messages_sent, "Messages acknowledged by the broker (PUBACK)."),
            ("entries_sent", stats.entries_sent, "Readings, events and results acknowledged."),
            ("historical_sent", stats.historical_sent, "Entries sent as backlog after an outage."),
            ("commands_received", stats.commands_received, "Command messages received."),
            ("flaps", stats.flaps, "Sessions the broker dropped within 10 s of accepting them."),
        ):
            yield CounterMetricFamily(f"cityedge_uplink_{name}", doc, value=value)

    def _outbox(self, status: Status) -> Iterator[Metric]:
        stats = status.outbox
        rows = GaugeMetricFamily(
            "cityedge_outbox_rows", "Rows waiting to be sent, by priority.", labels=["priority"]
        )
        for name in PRIORITY_NAMES.values():  # every priority, waiting rows or not
            rows.add_metric([name], stats.rows.get(name, 0))
        yield rows
        yield GaugeMetricFamily(
            "cityedge_outbox_bytes", "Bytes held by the outbox.", value=stats.bytes
        )
        yield GaugeMetricFamily(
            "cityedge_outbox_sealed_unacked",
            "Messages sealed and sent, not yet acknowledged.",
            value=stats.sealed_unacked,
        )
        age = 0.0 if stats.oldest_age is None else stats.oldest_age
        yield GaugeMetricFamily(
            "cityedge_outbox_oldest_age_seconds",
            "Age of the oldest unsent row (0 when empty).",
            value=age,
        )
        yield GaugeMetricFamily(
            "cityedge_outbox_disk_full",
            "1 while the disk refuses writes.",
            value=1.0 if stats.disk_full else 0.0,
        )
        yield CounterMetricFamily(
            "cityedge_outbox_rows_committed",
            "Rows committed (accepted).",
            value=stats.rows_committed,
        )
        evicted = CounterMetricFamily(
            "cityedge_outbox_evicted", "Rows evicted, by priority.", labels=["priority"]
        )
        for name in PRIORITY_NAMES.values():
            evicted.add_metric([name], stats.evicted.get(name, 0))
        yield evicted

    def _devices(self, status: Status, health: Sequence[DeviceStatus]) -> Iterator[Metric]:
        kinds = {d.name: d.kind for d in status.drivers}
        labels = ["device", "driver", "kind"]
        state = GaugeMetricFamily(
            "cityedge_device_state", "1 for the device's current state.", labels=[*labels, "state"]
        )
        up = GaugeMetricFamily(
            "cityedge_device_up", "1 when the device answers fully.", labels=labels
        )
        requests = CounterMetricFamily(
            "cityedge_device_requests", "Requests sent to the device.", labels=labels
        )
        errors = CounterMetricFamily(
            "cityedge_device_errors", "Failed requests, by reason.", labels=[*labels, "reason"]
        )
        latency = GaugeMetricFamily(
            "cityedge_device_latency_milliseconds",
            "Latency of the last answered request.",
            labels=labels,
        )
        seen = GaugeMetricFamily(
            "cityedge_device_last_seen_seconds",
            "When the device last answered (unix time).",
            labels=labels,
        )
        for h in health:
            key = [h.device, h.driver, kinds.get(h.driver) or ""]
            for s in DeviceState:
                state.add_metric([*key, str(s)], 1.0 if h.state == s else 0.0)
            up.add_metric(key, 1.0 if h.state == DeviceState.UP else 0.0)
            requests.add_metric(key, h.requests)
            for reason, count in sorted(h.errors.items()):
                errors.add_metric([*key, reason], count)
            if h.latency_ms is not None:
                latency.add_metric(key, h.latency_ms)
            if h.last_seen is not None:
                seen.add_metric(key, h.last_seen)
        yield from (state, up, requests, errors, latency, seen)

    def _tasks(self, status: Status) -> Iterator[Metric]:
        running = GaugeMetricFamily(
            "cityedge_task_running", "1 while a supervised task runs.", labels=["task"]
        )
        restarts = CounterMetricFamily(
            "cityedge_task_restarts", "Restarts of a supervised task.", labels=["task"]
        )
        for task in status.tasks:
            running.add_metric([task.name], 1.0 if task.running else 0.0)
            restarts.add_metric([task.name], task.restarts)
        yield from (running, restarts)

    def _control(self) -> Iterator[Metric]:
        if self.control is None:
            return
        overrides = self.control.overrides
        yield GaugeMetricFamily(
            "cityedge_overrides_active", "Local overrides in force.", value=len(overrides.active())
        )
        yield CounterMetricFamily(
            "cityedge_overrides_started", "Local overrides started.", value=overrides.started_total
        )
        yield CounterMetricFamily(
            "cityedge_overrides_denied",
            "Local writes denied by policy.",
            value=overrides.denied_total,
        )
        requests = CounterMetricFamily(
            "cityedge_control_requests", "Control socket requests.", labels=["op"]
        )
        for op, count in sorted(self.control.requests.items()):
            requests.add_metric([op], count)
        yield requests
        last = self.control.last_check
        if last is not None:
            checks = GaugeMetricFamily(
                "cityedge_check_status",
                "Last `cityedge check`: 0 ok, 1 warn, 2 fail.",
                labels=["check"],
            )
            for result in last.results:
                checks.add_metric([result.name], CHECK_VALUES[result.status.label])
            yield checks
            yield GaugeMetricFamily(
                "cityedge_check_time_seconds", "When the last check ran (unix time).", value=last.ts
            )


def registry_for(collector: AgentCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
