"""The read-only maintenance page and Prometheus `/metrics`, served by the agent.

Off unless `control.maintenance_address` is set (e.g. "127.0.0.1:8080" behind
an SSH tunnel, or the cabinet's service port). Routes:

    /         health, devices, overrides in force, the last `cityedge check`
    /metrics  Prometheus text exposition
    /healthz  "ok" while the agent runs (for a watchdog or a load balancer)
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import structlog

from cityedge.gateway.config import ConfigError
from cityedge.gateway.control import snapshot
from cityedge.gateway.control.protocol import encode
from cityedge.gateway.control.status import Status
from cityedge.gateway.diagnostics import record
from cityedge.gateway.diagnostics.clock import ClockSource, system_clock
from cityedge.gateway.maintenance.http import Request, Responder, Response
from cityedge.gateway.maintenance.metrics import AgentCollector, exposition, registry_for
from cityedge.gateway.maintenance.page import render
from cityedge.sdk import addresses
from cityedge.sdk.backoff import Backoff

if TYPE_CHECKING:
    from cityedge.gateway.control.server import ControlServer
    from cityedge.gateway.control.view import AgentView

log = structlog.get_logger(__name__)

METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
KEY = "control.maintenance_address"


def parse_address(text: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port`; ConfigError names the key and the value."""
    try:
        return addresses.parse_address(text)
    except addresses.AddressProblem as exc:
        raise ConfigError("<config>", [f"{KEY}: {exc}"]) from None


class MaintenancePage:
    """`await MaintenancePage(agent, "127.0.0.1:8080", control=server).run()` until cancelled."""

    def __init__(
        self,
        agent: AgentView,
        address: str | None = None,
        *,
        control: ControlServer | None = None,
        clock: ClockSource | None = None,
    ) -> None:
        text = address or agent.config.control.maintenance_address
        if not text:
            raise ConfigError("<config>", [f"{KEY}: not set (the page is off)"])
        self.agent = agent
        self.host, self.port = parse_address(text)
        self.control = control
        self.clock = control.clock if control else snapshot.ClockWatch(clock or system_clock)
        self.registry = registry_for(AgentCollector(agent, control, clock=self.clock.last))
        self.responder = Responder(
            {
                "/": self._page,
                "/index.html": self._page,
                "/metrics": self._metrics,
                "/healthz": self._healthz,
                "/status.json": self._status_json,
            }
        )
        self.bound_port: int | None = None
        self.listening = asyncio.Event()
        self.failures = 0  # binds that failed (the port in use): for tests and metrics

    async def run(self, retry_first: float = 1.0, retry_ceiling: float = 60.0) -> None:
        """Serve until cancelled. An address that cannot be bound (the port in use,
        not this machine's) is one error line; the agent runs on without its page and
        tries again with backoff, saying so only when the reason changes."""
        backoff = Backoff(retry_first, retry_ceiling)
        said: str | None = None
        while True:
            try:
                await self.responder.serve(self.host, self.port, self._started)
                return
            except OSError as exc:
                reason = exc.strerror or str(exc)
                delay = backoff.next()
                if reason != said:
                    log.error("maintenance.unavailable", address=f"{self.host}:{self.port}",
                              error=reason, retry_s=round(delay, 1),
                              remedy=f"free the port or change {KEY}")  # fmt: skip
                    said = reason
                self.failures += 1
            finally:
                self.listening.clear()
            await asyncio.sleep(delay)

    def _started(self, port: int) -> None:
        self.bound_port = port
        self.listening.set()
        log.info("maintenance.listening", address=f"{self.host}:{port}")

    def _last_check(self) -> record.CheckRecord | None:
        if self.control is not None:
            return self.control.last_check
        return record.load(self.agent.config.gateway.state_dir / record.FILE_NAME)

    async def _status(self) -> Status:
        in_force = snapshot.overrides(self.agent.overrides)
        return snapshot.status(self.agent, await self.clock.state(), in_force)

    async def _page(self, request: Request) -> Response:
        body = render(
            await self._status(), snapshot.devices(self.agent), self._last_check(), time.time()
        )
        return Response(200, body.encode(), "text/html; charset=utf-8")

    async def _status_json(self, request: Request) -> Response:
        last = self._last_check()
        data = {
            "status": (await self._status()).to_json(),
            "devices": [d.to_json() for d in snapshot.devices(self.agent)],
            "last_check": last.to_json() if last else None,
        }
        return Response(200, encode(data), "application/json")

    async def _metrics(self, request: Request) -> Response:
        await self.clock.state()  # refresh the cached answer (at most every 30 s)
        return Response(200, exposition(self.registry), METRICS_TYPE)

    async def _healthz(self, request: Request) -> Response:
        return Response(200, b"ok\n")


__all__ = ["MaintenancePage", "parse_address"]
