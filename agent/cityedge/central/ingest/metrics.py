"""What ingest tells Prometheus and a load balancer: counters and gauges in a registry
of its own, a health snapshot, both served over HTTP (`/metrics`, `/health`) by the
standard library's threaded server (read-only, loopback by default)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from cityedge.central.ingest.store.base import Totals, WriteReport

STALE_AFTER = 120.0  # seconds without a commit while the source has a backlog: unhealthy


@dataclass(slots=True)
class Health:
    source: str = "connecting"  # connecting, connected, down
    store: str = "connecting"  # connecting, ok, failing
    last_commit: float | None = None  # wall clock of the last committed batch
    lag: int | None = None  # messages waiting in the engine
    holes: int = 0
    missing: int = 0
    readings_per_s: float = 0.0
    detail: str = ""
    started: float = field(default_factory=time.time)

    def ok(self) -> bool:
        if self.source != "connected" or self.store == "failing":
            return False
        backlog = bool(self.lag)
        quiet = self.last_commit is None or time.time() - self.last_commit > STALE_AFTER
        return not (backlog and quiet)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("cityedge_ingest_messages", "Gateway messages handled, by outcome",
                                ["outcome"], registry=r)  # fmt: skip
        self.readings = Counter("cityedge_ingest_readings", "Readings stored", registry=r)
        self.events = Counter("cityedge_ingest_events", "Events stored", registry=r)
        self.rejected = Counter("cityedge_ingest_rejected", "Messages refused, by reason",
                                ["reason"], registry=r)  # fmt: skip
        self.holes = Gauge("cityedge_ingest_holes_open", "Holes open in the gateways' sequences",
                           registry=r)  # fmt: skip
        self.missing = Gauge("cityedge_ingest_missing", "Sequence numbers in open holes",
                             registry=r)  # fmt: skip
        self.lag = Gauge("cityedge_ingest_lag_messages", "Messages waiting in the engine",
                         registry=r)  # fmt: skip
        self.age = Gauge(
            "cityedge_ingest_lag_seconds",
            "Age of the newest stored message when it was stored",
            registry=r,
        )
        self.rate = Gauge(
            "cityedge_ingest_readings_per_second",
            "Readings stored per second (last minute)",
            registry=r,
        )
        self.batch = Histogram("cityedge_ingest_batch_seconds", "Decode, store and ack of a batch",
                               registry=r)  # fmt: skip
        self.health = Health()
        self._window: list[tuple[float, int]] = []

    def stored(self, report: WriteReport, newest_ts: float | None) -> None:
        now = time.time()
        self.messages.labels("stored").inc(report.messages)
        self.messages.labels("duplicate").inc(report.duplicates)
        self.readings.inc(report.readings)
        self.events.inc(report.events)
        if newest_ts is not None:
            self.age.set(max(0.0, now - newest_ts))
        self._window = [(t, n) for t, n in self._window if now - t <= 60.0]
        self._window.append((now, report.readings))
        span = max(1.0, now - self._window[0][0])
        self.health.readings_per_s = sum(n for _, n in self._window) / span
        self.rate.set(self.health.readings_per_s)
        self.health.last_commit = now
        self.health.store = "ok"

    def refused(self, reason: str) -> None:
        self.rejected.labels(reason).inc()
        self.messages.labels("rejected").inc()

    def totals(self, totals: Totals, lag: int | None) -> None:
        self.holes.set(totals.holes)
        self.missing.set(totals.missing)
        self.health.holes, self.health.missing = totals.holes, totals.missing
        self.health.lag = lag
        if lag is not None:
            self.lag.set(lag)


class _Handler(BaseHTTPRequestHandler):
    metrics: Metrics

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/metrics":
            self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry))
        elif self.path.split("?")[0] == "/health":
            health = self.metrics.health
            body = json.dumps({"ok": health.ok(), **asdict(health)}).encode()
            status = HTTPStatus.OK if health.ok() else HTTPStatus.SERVICE_UNAVAILABLE
            self._send(status, "application/json", body)
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"try /health or /metrics\n")

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes are not log lines


def serve(metrics: Metrics, host: str, port: int) -> ThreadingHTTPServer:
    """Serve /metrics and /health on a daemon thread; `server.server_address` has the port."""
    handler = type("Handler", (_Handler,), {"metrics": metrics})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="ingest-http", daemon=True).start()
    return server
