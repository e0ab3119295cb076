"""The console for a person: `central send` finds a gateway's site without a retained
state message (RabbitMQ 3.10 delivers none to a wildcard subscription), and
`central watch --session` gets what arrived while it was away."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from pathlib import Path

import aiomqtt
import pytest

from cityedge.central.commands import NoResult, new_command, send_command
from cityedge.protocol.keys import SigningKey
from cityedge.street.broker import Broker
from cityedge.street.fleet import publish_reliably
from tests.central_ingest.helpers import fleet
from tests.central_ingest.workers import wait_until
from tests.support.agent_process import ROOT, agent_env, cityedge


async def test_send_learns_the_site_from_telemetry_when_no_state_is_retained(
    tmp_path: Path,
) -> None:
    (gw,) = fleet(1, site="town-09")
    command_key = SigningKey.from_seed(bytes([42]) * 32)
    seen: list[str] = []
    with Broker(workdir=tmp_path / "broker") as broker:

        async def gateway() -> None:  # telemetry only, never a retained state
            async with aiomqtt.Client("127.0.0.1", broker.port, identifier="gw") as client:
                await client.subscribe("cityedge/v2/+/gw-000/cmd", qos=1)

                async def listen() -> None:
                    async for message in client.messages:
                        seen.append(str(message.topic))

                listening = asyncio.create_task(listen())
                try:
                    for i in range(200):
                        await client.publish(gw.topic, gw.telemetry(1_790_000_000.0 + i)[1],
                                             qos=1)  # fmt: skip
                        await asyncio.sleep(0.1)
                finally:
                    listening.cancel()

        running = asyncio.create_task(gateway())
        try:
            command = new_command(command_key, "gw-000", "ping")
            with pytest.raises(NoResult):  # nobody answers, but the site was found
                trusted = {gw.key.key_id: gw.key.public_key}
                await send_command(broker.url, command_key, command, trusted=trusted, within=4)

            async def delivered() -> bool:
                return seen == ["cityedge/v2/town-09/gw-000/cmd"]

            await wait_until(delivered, 10, "the command on the gateway's topic")
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await running


def _watch(broker: Broker, gw_trust: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cityedge.cli", "central", "watch", "--broker", broker.url,
         "--trust", gw_trust, "--session", "console-1", "--count", "1", "--timeout", "60",
         "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=agent_env(),
    )  # fmt: skip


async def test_watch_session_gets_what_arrived_while_it_was_away(tmp_path: Path) -> None:
    (gw,) = fleet(1)
    trust = f"{gw.gateway}={gw.key.public_text()}"
    with Broker(workdir=tmp_path / "broker") as broker:
        first = _watch(broker, trust)  # creates the session and subscribes

        async def subscribed() -> bool:
            return "console-1" in broker.log_path.read_text() and "cityedge/v2/+/+/#" in (
                broker.log_path.read_text())  # fmt: skip

        await wait_until(subscribed, 30, "watch subscribed")
        await publish_reliably("127.0.0.1", broker.port, [(gw.topic, gw.telemetry(1.0e9)[1])],
                               client_id="gw-a")  # fmt: skip
        out, _ = await asyncio.to_thread(first.communicate, timeout=60)
        assert first.returncode == 0 and '"seq": 1' in out
        # Away: the next message waits in the session.
        await publish_reliably("127.0.0.1", broker.port, [(gw.topic, gw.telemetry(1.0e9)[1])],
                               client_id="gw-a")  # fmt: skip
        second = await asyncio.to_thread(
            cityedge, "central", "watch", "--broker", broker.url, "--trust", trust,
            "--session", "console-1", "--count", "1", "--timeout", "30", "--json",
        )  # fmt: skip
        assert second.returncode == 0, second.stderr
        assert '"seq": 2' in second.stdout
