"""`[uplink] mqtt_version`: MQTT v5 stays the default, and "3.1.1" (for RabbitMQ 3.x
and NATS 2.9, which refuse a v5 CONNECT) still keeps a persistent session — checked
against a plain Mosquitto, which speaks both: a command published while the real
agent is stopped is delivered and answered once it is back."""

from __future__ import annotations

import re
from pathlib import Path

import aiomqtt
import pytest

from cityedge.central.commands import new_command
from cityedge.gateway.config import UplinkSection, load_config
from cityedge.protocol.commands import MAX_COMMAND_BYTES, seal_command
from cityedge.protocol.key_files import create_key
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.topics import DEFAULT_PREFIX, topic_for
from cityedge.sdk.problems import FileProblems
from cityedge.street.broker import Broker
from tests.integration.conftest import ConfigWriter, broker, gateway_key, write_config
from tests.integration.test_uplink_commands import oversized_command, publish_all
from tests.support.agent_process import AgentProcess
from tests.support.command_post import CommandPost

__all__ = ["broker", "gateway_key", "write_config"]  # fixtures, imported for this module

CMD_TOPIC = topic_for(DEFAULT_PREFIX, "town-01", "gw-test", "command")


def test_v5_is_the_default_and_other_versions_are_refused_by_name(tmp_path: Path) -> None:
    assert UplinkSection().mqtt_version == "5"
    path = tmp_path / "agent.toml"
    base = f'[gateway]\nid = "gw-test"\nsite = "town-01"\nstate_dir = "{tmp_path}"\n[uplink]\n'
    path.write_text(base + 'mqtt_version = "3.1.1"\n')
    assert load_config(path).config.uplink.mqtt_version == "3.1.1"
    for wrong in ('"3.1"', "5"):  # 5 unquoted: a number, not the version's name
        path.write_text(base + f"mqtt_version = {wrong}\n")
        with pytest.raises(FileProblems, match=r"uplink\.mqtt_version: should be '5' or '3\.1\.1'"):
            load_config(path)


def _connects(broker: Broker) -> list[tuple[str, str]]:
    """(protocol, clean flag) of each connection of the agent's client id, from
    Mosquitto's connection messages ("... as town-01-gw-test (p5, c0, k30)")."""
    found = re.findall(r"as town-01-gw-test \((p\d), (c\d)", broker.log_path.read_text())
    return [(p, c) for p, c in found]


@pytest.mark.parametrize(("version", "expected"), [(None, "p5"), ("3.1.1", "p2")])
async def test_a_command_sent_while_the_agent_is_away_is_answered_after_reconnect(
    tmp_path: Path, broker: Broker, gateway_key: SigningKey, write_config: ConfigWriter,
    version: str | None, expected: str,
) -> None:  # fmt: skip
    central = create_key(tmp_path / "central.key")
    uplink = {} if version is None else {"mqtt_version": version}
    agent = AgentProcess(write_config(keys={"trust": [central.public_text()]}, uplink=uplink))
    async with CommandPost(broker.port, gateway_key.public_key) as post:

        def status(s: str) -> bool:
            return any(state.get("status") == s for state in post.states)

        with agent:  # once, so that its session (the subscription) exists at the broker
            assert await post.wait_for(lambda: status("online"), 30), agent.logs()
        assert await post.wait_for(lambda: status("offline"), 30), agent.logs()
        ping = new_command(central, "gw-test", "ping", ttl=600)
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="console", timeout=10) as c:
            await c.publish(CMD_TOPIC, seal_command(central, ping), qos=1, timeout=10)
        with agent:

            def answered() -> bool:
                return any(r["command_id"] == ping.id for r in post.results)

            assert await post.wait_for(answered, 30), agent.logs()
    result = next(r for r in post.results if r["command_id"] == ping.id)
    assert result["code"] == "done"
    connects = _connects(broker)
    assert len(connects) >= 2 and set(connects) == {(expected, "c0")}  # persistent session


async def test_over_311_an_oversized_command_is_still_refused_by_size(
    tmp_path: Path, broker: Broker, gateway_key: SigningKey, write_config: ConfigWriter
) -> None:
    """No Maximum Packet Size to ask for in 3.1.1: the broker delivers what it accepts,
    and the agent refuses a command past the size limit before decoding it."""
    central = create_key(tmp_path / "central.key")
    config = write_config(keys={"trust": [central.public_text()]}, uplink={"mqtt_version": "3.1.1"})
    async with CommandPost(broker.port, gateway_key.public_key) as post:

        def refused() -> bool:
            return any(str(r["detail"]).startswith("too-large") for r in post.results)

        with AgentProcess(config) as agent:
            assert await post.wait_for(lambda: bool(post.states), 30), agent.logs()
            big = oversized_command(MAX_COMMAND_BYTES + 1024)
            await publish_all(broker.port, CMD_TOPIC, [big])
            assert await post.wait_for(refused, 30), agent.logs()
    refusal = next(r for r in post.results if str(r["detail"]).startswith("too-large"))
    assert refusal["code"] == "too-large" and refusal["command_id"] == ""
