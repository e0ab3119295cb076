"""The control socket: how technicians' tools talk to the running agent.

`ControlServer(agent).run()` serves the socket (a supervised task of the
runtime); `ControlClient(path).call(op, …)` asks it. The wire format and the
operations are in `cityedge.gateway.control.protocol`; docs/operations.md describes them
for people.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from cityedge.gateway.control.client import ControlClient
from cityedge.gateway.control.protocol import AgentUnreachable, ControlError
from cityedge.gateway.control.server import ControlServer

if TYPE_CHECKING:
    from cityedge.gateway.control.view import AgentView


def technician_tasks(agent: AgentView) -> dict[str, Callable[[], Awaitable[None]]]:
    """The long-running tasks for the runtime to supervise: the control socket, and the
    maintenance page when `control.maintenance_address` is set."""
    control = ControlServer(agent)
    tasks: dict[str, Callable[[], Awaitable[None]]] = {"control": control.run}
    address = agent.config.control.maintenance_address
    if address:
        # The page's HTTP and Prometheus code loads only where a page is configured.
        from cityedge.gateway.maintenance import MaintenancePage

        tasks["maintenance"] = MaintenancePage(agent, address, control=control).run
    return tasks


__all__ = [
    "AgentUnreachable",
    "ControlClient",
    "ControlError",
    "ControlServer",
    "technician_tasks",
]
