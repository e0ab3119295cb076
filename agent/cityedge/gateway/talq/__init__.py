"""The TALQ gateway side: the agent as a gateway of the TALQ Smart City Protocol 2.7.

A city's central management software (CMS) drives the gateway through the TALQ
gateway API (`app`, served over HTTPS with mutual TLS) and hears from it through
the CMS API (`cms`: bootstrap, device announcement, log reports and events, all
through a durable queue). Devices, functions and attributes come from the driver
catalogue (`mapping`); calendars and control programs become the agent's lighting
programs (`translate`), override commands its local overrides (`control`).
docs/talq.md is the operator's side of it.

`talq_tasks(agent)` gives the runtime its supervised tasks. Nothing is loaded
here: the config reads `section` on every gateway, and aiohttp only loads where
a `[talq]` table is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cityedge.sdk.model import Event, Reading

    Observer = Callable[[Sequence[Reading | Event]], None]
    from cityedge.gateway.talq.core import AgentSide
    from cityedge.gateway.talq.section import TalqSection


def talq_tasks(
    section: TalqSection, agent: AgentSide, state_dir: Path, observers: list[Observer]
) -> dict[str, Callable[[], Awaitable[None]]]:
    """The API server and the CMS client, for the runtime to supervise."""
    from cityedge.gateway.talq.app import serve
    from cityedge.gateway.talq.cms import CmsClient
    from cityedge.gateway.talq.core import TalqCore
    from cityedge.gateway.talq.store import TalqStore

    store = TalqStore(state_dir / "talq" / "state.json")
    core = TalqCore(section, agent, store)
    cms = CmsClient(core, state_dir / "talq" / "queue.db")
    observers.append(cms.observe)
    return {"talq-api": lambda: serve(core), "talq-cms": cms.run}
