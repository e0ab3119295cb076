"""Commands through a real Mosquitto to the real agent (a subprocess), issue 19:

- item 1: a backlog of signed commands queued while the agent was stopped is
  answered in full after it starts (each command gets a result: none vanishes);
- item 6: an oversized command is refused by size without being decoded (and the
  agent asks the broker not to send it anything larger than a message can be): the
  agent's peak memory does not grow with the command.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import aiomqtt
import msgpack

from cityedge.central.commands import new_command
from cityedge.protocol.commands import MAX_COMMAND_BYTES, command_digest, seal_command
from cityedge.protocol.key_files import create_key
from cityedge.protocol.keys import SigningKey
from cityedge.street.broker import Broker
from tests.integration.conftest import ConfigWriter
from tests.support.agent_process import AgentProcess
from tests.support.command_post import CommandPost

CMD_TOPIC = "cityedge/v2/town-01/gw-test/cmd"
BACKLOG = 1500  # over the old 1,000-message queue: enough to lose commands before the fix


async def publish_all(port: int, topic: str, payloads: Sequence[bytes], window: int = 200) -> None:
    """Publish at QoS 1, `window` at a time; returns once the broker has them all."""
    async with aiomqtt.Client("127.0.0.1", port, timeout=30, max_inflight_messages=window) as c:
        for start in range(0, len(payloads), window):
            chunk = payloads[start : start + window]
            await asyncio.gather(*(c.publish(topic, p, qos=1, timeout=60) for p in chunk))


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def oversized_command(size: int) -> bytes:
    """An envelope whose body is `size` bytes: too large to be a command, whatever it
    says (no signature is checked before the size)."""
    return bytes(msgpack.packb({"v": 1, "kid": "0" * 16, "body": bytes(size), "sig": bytes(64)}))


async def answer_backlog(
    broker: Broker, central: SigningKey, post: CommandPost, agent: AgentProcess, count: int
) -> tuple[set[bytes], Counter[str], float]:
    """Queue `count` pings while the agent is stopped, start it; (digests of the commands
    answered, codes, seconds). Results are matched by digest: the exact command bytes."""
    with agent:  # once, so that its session (the subscription) exists at the broker
        assert await post.wait_for(lambda: bool(post.states), timeout=30), agent.logs()
    commands = [new_command(central, "gw-test", "ping", ttl=1800) for _ in range(count)]
    sealed = [seal_command(central, c) for c in commands]
    await publish_all(broker.port, CMD_TOPIC, sealed)
    digests = {command_digest(s) for s in sealed}

    def answered() -> set[bytes]:
        return {d for r in post.results if isinstance(d := r["digest"], bytes)} & digests

    started = time.monotonic()
    with agent:
        await post.wait_for(lambda: answered() == digests, timeout=60 + count / 10)
        took = time.monotonic() - started
    codes = Counter(str(r["code"]) for r in post.results if r["digest"] in digests)
    return answered(), codes, took


async def test_a_backlog_of_queued_commands_is_answered_in_full(
    tmp_path: Path, broker: Broker, gateway_key: SigningKey, write_config: ConfigWriter
) -> None:
    central = create_key(tmp_path / "central.key")
    agent = AgentProcess(write_config(keys={"trust": [central.public_text()]}))
    async with CommandPost(broker.port, gateway_key.public_key) as post:
        answered, codes, _ = await answer_backlog(broker, central, post, agent, BACKLOG)
    assert len(answered) == BACKLOG, (len(answered), codes)
    assert set(codes) <= {"done", "busy"}, codes
    assert "Message queue is full" not in agent.logs()


async def test_an_oversized_command_is_refused_by_size(
    tmp_path: Path, broker: Broker, gateway_key: SigningKey, write_config: ConfigWriter
) -> None:
    central = create_key(tmp_path / "central.key")
    config = write_config(keys={"trust": [central.public_text()]})
    async with CommandPost(broker.port, gateway_key.public_key) as post:
        agent = AgentProcess(config).start()
        try:
            assert await post.wait_for(lambda: bool(post.states), timeout=30), agent.logs()
            assert agent.proc is not None
            before = peak_rss_mb(agent.proc.pid)
            # Past the command limit, within the packet bound: delivered, refused by size.
            await publish_all(broker.port, CMD_TOPIC, [oversized_command(MAX_COMMAND_BYTES + 1024)])
            assert await post.wait_for(
                lambda: any(str(r["detail"]).startswith("too-large") for r in post.results), 20
            ), agent.logs()
            # Far past anything the agent accepts: the broker must not even send it.
            await publish_all(broker.port, CMD_TOPIC, [oversized_command(48 << 20)])
            ping = new_command(central, "gw-test", "ping")
            await publish_all(broker.port, CMD_TOPIC, [seal_command(central, ping)])
            assert await post.wait_for(
                lambda: any(r["command_id"] == ping.id for r in post.results), 20
            ), agent.logs()
            grew = peak_rss_mb(agent.proc.pid) - before
        finally:
            agent.stop()
    refusal = next(r for r in post.results if str(r["detail"]).startswith("too-large"))
    assert refusal["code"] == "too-large" and refusal["command_id"] == ""
    assert grew < 16, f"peak RSS grew by {grew:.0f} MB for a 48 MiB command"
