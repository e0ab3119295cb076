"""`cityedge check`'s LoRaWAN group: is the forwarder list set (GWMP has no
authentication: without a list, any sender on the network may take the few places
kept for forwarders), and does the running agent hear a packet forwarder?

Only the running agent can tell the latter (the forwarder sends to its UDP
listener), so without one the answer is a warning, not a guess.
"""

from __future__ import annotations

from collections.abc import Sequence

from cityedge.drivers.lorawan.config import Section
from cityedge.sdk.checks import AgentError, CheckEnv, CheckResult, fail, ok, warn
from cityedge.sdk.driver import DriverSection

REMEDY = (
    "check the concentrator: is the packet forwarder running, and do server_address and "
    "serv_port_up in its global_conf.json point at this gateway's UDP listener?"
)


LIST_REMEDY = (
    "list the concentrator's gateway EUI (gateway_ID in its global_conf.json) under "
    'forwarders = ["…"] in the [[drivers.lorawan]] table: docs/lorawan.md'
)


def allowlists(sections: Sequence[DriverSection]) -> list[CheckResult]:
    """A warning per LoRaWAN table whose `forwarders` list is empty."""
    out = []
    for section in sections:
        if isinstance(section, Section) and not section.forwarders:
            out.append(warn(
                f"lorawan.{section.name}.forwarders",
                f"no forwarders listed: the first {section.max_forwarders} gateway EUIs heard "
                f"on {section.listen}:{section.port} are taken, whoever sends them",
                LIST_REMEDY,
            ))  # fmt: skip
    return out


async def checks(sections: Sequence[DriverSection], ctx: CheckEnv) -> list[CheckResult]:
    if not sections:
        return []
    return allowlists(sections) + await _heard(ctx)


async def _heard(ctx: CheckEnv) -> list[CheckResult]:
    agent = await ctx.agent()
    if agent is None:
        return [
            warn(
                "lorawan.forwarder",
                "agent not running: cannot tell whether the packet forwarder is heard",
                "start the agent (`systemctl start cityedge`) and run the check again",
            )
        ]
    try:
        data = await agent.ask("forwarders")
    except AgentError as exc:
        return [warn("lorawan.forwarder", f"cannot ask the agent: {exc}", "see the agent's log")]
    seen = [h.get("last_seen") for h in data.get("health", []) if isinstance(h, dict)]
    last = max((s for s in seen if isinstance(s, int | float)), default=None)
    if last is None:
        return [
            fail("lorawan.forwarder", "no packet forwarder heard since the agent started", REMEDY)
        ]
    age = ctx.now() - last
    if age > ctx.silence_limit:
        return [fail("lorawan.forwarder", f"packet forwarder last heard {age:.0f} s ago", REMEDY)]
    return [ok("lorawan.forwarder", f"packet forwarder heard {max(age, 0):.0f} s ago")]
