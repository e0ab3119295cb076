"""What the technicians' side may see and do of the running agent, and no more.

The control server, the status read-model, the maintenance page and its metrics
read an `AgentView`; the override feature acts through `DeviceAccess`. The
runtime's `Agent` is both (structurally), but none of them gets its outbox's
writer, its command handler or its keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from cityedge.sdk.driver import Driver
from cityedge.sdk.model import DeviceHealth, DeviceInfo, Event, PointInfo, Value

if TYPE_CHECKING:
    from cityedge.gateway.config import AgentConfig
    from cityedge.gateway.control.overrides import Overrides
    from cityedge.gateway.outbox import OutboxStats
    from cityedge.gateway.supervisor import TaskHealth
    from cityedge.gateway.uplink import UplinkStats


class OutboxView(Protocol):
    def stats(self) -> OutboxStats: ...


class UplinkView(Protocol):
    @property
    def stats(self) -> UplinkStats: ...


class AgentView(Protocol):
    """Read-only: ids and config pieces, counters, tasks' state, drivers' catalogue and health."""

    @property
    def config(self) -> AgentConfig: ...
    @property
    def config_digest(self) -> str: ...
    @property
    def started(self) -> float: ...
    @property
    def drivers(self) -> Mapping[str, Driver]: ...
    @property
    def tasks(self) -> Mapping[str, TaskHealth]: ...
    @property
    def outbox(self) -> OutboxView: ...
    @property
    def uplink(self) -> UplinkView: ...
    @property
    def overrides(self) -> Overrides: ...

    def devices(self) -> dict[str, DeviceInfo]: ...
    def device_health(self) -> list[DeviceHealth]: ...
    def driver_for(self, device: str) -> Driver | None: ...


class DeviceAccess(Protocol):
    """What a local override needs: the devices, the local policy, and a way to tell
    the command post (an event committed to the outbox, the uplink woken)."""

    def devices(self) -> dict[str, DeviceInfo]: ...
    async def write(self, device: str, point: str, value: Value) -> None: ...
    async def read_point(self, device: str, point: str) -> Value | None: ...
    def check_write(self, device_type: str, point: PointInfo, value: Value) -> str | None: ...
    def report(self, event: Event) -> None: ...
