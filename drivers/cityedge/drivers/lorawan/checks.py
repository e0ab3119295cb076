"""`cityedge check`'s LoRaWAN group: does the running agent hear a packet forwarder?

Only the running agent can tell (the forwarder sends to its UDP listener), so
without one the answer is a warning, not a guess.
"""

from __future__ import annotations

from collections.abc import Sequence

from cityedge.sdk.checks import AgentError, CheckEnv, CheckResult, fail, ok, warn
from cityedge.sdk.driver import DriverSection

REMEDY = (
    "check the concentrator: is the packet forwarder running, and do server_address and "
    "serv_port_up in its global_conf.json point at this gateway's UDP listener?"
)


async def checks(sections: Sequence[DriverSection], ctx: CheckEnv) -> list[CheckResult]:
    if not sections:
        return []
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
