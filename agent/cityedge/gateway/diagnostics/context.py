"""What every check may know: the config, its limits, and injectable views of the machine.

The thresholds and sources are fields so that a test (or a technician, via
`cityedge check` options) can set them: a disk "nearly full" at 99 % free, an
unsynchronised clock, a different /sys.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cityedge.gateway.config import AgentConfig, LoadedConfig
from cityedge.gateway.control.client import ControlClient
from cityedge.gateway.control.protocol import ControlError
from cityedge.gateway.diagnostics.clock import ClockSource, system_clock
from cityedge.sdk.checks import AgentError, CheckEnv, RunningAgent


@dataclass(frozen=True, slots=True)
class SocketAgent:
    """The running agent as drivers' checks see it: its control socket, asked in a thread."""

    client: ControlClient

    async def ask(self, op: str, **arguments: Any) -> Any:
        try:
            return await asyncio.to_thread(self.client.call, op, **arguments)
        except ControlError as exc:
            raise AgentError(str(exc)) from None


@dataclass
class CheckContext:
    config_path: Path
    clock: ClockSource = system_clock
    disk_warn: float = 0.10  # free share of the state dir's filesystem below which to warn
    disk_fail: float = 0.02
    network_timeout: float = 5.0  # each of DNS, TCP, TLS, MQTT connect and subscribe
    device_timeout: float = 3.0  # one read of one field device
    cert_warn_days: float = 30.0
    forwarder_silence: float = 300.0  # a packet forwarder reports every 30 s by default
    group_timeout: float = 60.0  # a whole group of checks (e.g. every Modbus device)
    sysfs: Path = Path("/sys")
    socket: Path | None = None  # the control socket; default from the config
    now: Callable[[], float] = time.time
    loaded: LoadedConfig | None = None  # set by the config check
    _agent: ControlClient | None = field(default=None, repr=False)
    _agent_asked: bool = field(default=False, repr=False)

    @property
    def config(self) -> AgentConfig | None:
        return self.loaded.config if self.loaded else None

    def socket_path(self) -> Path | None:
        if self.socket is not None:
            return self.socket
        return self.loaded.config.control_socket_path if self.loaded else None

    async def running_agent(self) -> ControlClient | None:
        """A client for the running agent, or None when no agent answers (asked once)."""
        if not self._agent_asked:
            self._agent_asked = True
            path = self.socket_path()
            if path is not None:
                client = ControlClient(path, timeout=max(self.network_timeout, 5.0))
                if await asyncio.to_thread(client.running):
                    self._agent = client
        return self._agent

    async def _running(self) -> RunningAgent | None:
        client = await self.running_agent()
        return None if client is None else SocketAgent(client)

    def check_env(self) -> CheckEnv:
        """What the drivers' own checks get (`cityedge.sdk.checks`); needs the config."""
        assert self.loaded is not None
        return CheckEnv(
            self.loaded.driver_env(),
            self._running,
            device_timeout=self.device_timeout,
            silence_limit=self.forwarder_silence,
            sysfs=self.sysfs,
            now=self.now,
        )
