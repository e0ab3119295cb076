"""Live data first after an outage: when the broker comes back, the first message the
command post receives that was sealed after the outage began is live, not backlog
(docs/protocol.md §7, the uplink's `live_first_wait`). Real lampposts (pymodbus), the
agent as a subprocess, a private Mosquitto stopped and started again."""

from __future__ import annotations

import asyncio
import time

from cityedge.protocol.entries import Message
from cityedge.protocol.keys import SigningKey
from cityedge.street.broker import Broker
from cityedge.street.modbus import ModbusStreet
from tests.integration.conftest import ConfigWriter
from tests.support.agent_process import AgentProcess
from tests.support.command_post import CommandPost


def _since(post: CommandPost, mark: int, stopped_at: float) -> list[Message]:
    """Accepted telemetry/event/result messages received after `mark`, sealed after
    `stopped_at` (so neither a resend of what was in flight nor what the broker still
    held for the command post from before), in the order they arrived."""
    return [
        v.message
        for v in post.verdicts[mark:]
        if v.accepted and v.message is not None and v.message.kind != "state"
        and v.message.ts > stopped_at
    ]  # fmt: skip


async def test_after_an_outage_the_first_message_is_live(
    broker: Broker, gateway_key: SigningKey, write_config: ConfigWriter
) -> None:
    # With live_first_wait = 0 (the behaviour before it existed) about 100 backlog
    # messages of this outage arrive ahead of the first live one.
    async with ModbusStreet(lampposts=3, meters=0) as street:
        tables = street.driver_tables(name="street", poll_interval=0.2, timeout=5.0)
        # Small messages: the outage leaves a backlog of many of them.
        config = write_config(
            modbus=[tables], uplink={"batch_max_readings": 20, "live_first_wait": 2.0}
        )
        async with CommandPost(broker.port, gateway_key.public_key) as post:
            with AgentProcess(config) as agent:
                assert await post.wait_for(lambda: len(post.readings) > 50, timeout=30)
                broker.stop()
                stopped_at = time.time()
                await asyncio.sleep(6)
                mark = len(post.verdicts)
                broker.start()

                def drained() -> bool:
                    got = _since(post, mark, stopped_at)
                    return sum(m.historical for m in got) >= 30 and not got[-1].historical

                assert await post.wait_for(drained, timeout=60), agent.logs()[-2000:]
        received = _since(post, mark, stopped_at)
        backlog = [m.seq for m in received if m.historical]
        first = received[0]
        ahead = next(i for i, m in enumerate(received) if not m.historical)
        assert ahead == 0, f"{ahead} backlog messages arrived before the first live one"
        assert not first.historical and first.seq > max(backlog)
        assert post.rejected == []
