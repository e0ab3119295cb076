"""The shipped broker config (config/mosquitto/cityedge.conf + acl) on a real
Mosquitto with real mutual TLS (certificates made with `openssl`): the client id
is bound to the certificate, so one gateway cannot disconnect another or take
over its queued commands by using its client id (issue 19, item 7); packets over
the size bound are refused at the broker (item 6); and the real agent works under
it (MQTT v5, flow control)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest

from cityedge.central.commands import new_command
from cityedge.protocol.commands import seal_command
from cityedge.protocol.key_files import create_key
from cityedge.protocol.opening import open_message
from cityedge.street.broker import Broker, free_port
from tests.security.openssl_pki import Pki, make_pki, shipped_listener
from tests.support.agent_process import AgentProcess, to_toml

PREFIX = "cityedge/v2/town-01"
VICTIM, ATTACKER = "gw-2", "gw-1"
VICTIM_IDS = ("town-01-gw-2", "gw-2")  # the agent's default client id, and the bare id


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki", (VICTIM, ATTACKER, "command-post"))


@contextlib.contextmanager
def shipped_broker(tmp_path: Path, pki: Pki) -> Iterator[Broker]:
    port = free_port()
    with Broker(port, default_listener=False, workdir=tmp_path / "broker",
                extra_config=shipped_listener(port, pki)) as broker:  # fmt: skip
        yield broker


@pytest.fixture
def broker(tmp_path: Path, pki: Pki) -> Iterator[Broker]:
    with shipped_broker(tmp_path, pki) as running:
        yield running


def tls_client(
    broker: Broker, pki: Pki, cert: str, identifier: str, **kw: object
) -> aiomqtt.Client:
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(str(pki.cert(cert)), str(pki.key(cert)))
    return aiomqtt.Client("127.0.0.1", broker.port, identifier=identifier, tls_context=context,
                          timeout=5, **kw)  # type: ignore[arg-type]  # fmt: skip


@dataclass
class Listener:
    """A connected client's inbox; `lost` says whether its connection was taken away."""

    received: list[bytes] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)

    async def run(self, client: aiomqtt.Client, ready: asyncio.Event) -> None:
        ready.set()
        try:
            async for message in client.messages:
                self.received.append(bytes(message.payload))
        except aiomqtt.MqttError as exc:
            self.lost.append(str(exc))


async def listen(client: aiomqtt.Client, listener: Listener) -> asyncio.Task[None]:
    ready = asyncio.Event()
    task = asyncio.create_task(listener.run(client, ready))
    await ready.wait()
    return task


async def until(condition: object, timeout: float = 10.0) -> bool:
    for _ in range(int(timeout / 0.05)):
        if condition():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return bool(condition())  # type: ignore[operator]


async def takeover_attempts(broker: Broker, pki: Pki, rounds: int, **kw: object) -> list[bytes]:
    """The attacker's certificate, the victim's client ids, again and again; what it read."""
    stolen: list[bytes] = []
    for i in range(rounds):
        identifier = VICTIM_IDS[i % len(VICTIM_IDS)]
        with contextlib.suppress(aiomqtt.MqttError):
            async with tls_client(broker, pki, ATTACKER, identifier, **kw) as attacker:
                await attacker.subscribe(f"{PREFIX}/{VICTIM}/cmd", qos=1)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.1):
                        async for message in attacker.messages:
                            stolen.append(bytes(message.payload))
    return stolen


async def test_another_gateway_cannot_disconnect_by_client_id(broker: Broker, pki: Pki) -> None:
    victim = Listener()
    async with (
        tls_client(broker, pki, "command-post", "command-post") as post,
        tls_client(broker, pki, VICTIM, VICTIM_IDS[0], clean_session=False) as gw,
    ):
        await gw.subscribe(f"{PREFIX}/{VICTIM}/cmd", qos=1)
        task = await listen(gw, victim)
        attack = asyncio.create_task(takeover_attempts(broker, pki, 20))
        sent = [f"command {i}".encode() for i in range(10)]
        for payload in sent:
            await post.publish(f"{PREFIX}/{VICTIM}/cmd", payload, qos=1)
            await asyncio.sleep(0.1)
        stolen = await attack
        assert await until(lambda: len(victim.received) >= len(sent) or victim.lost)
        task.cancel()
    assert victim.lost == []  # never disconnected by the 20 attempts
    assert victim.received == sent
    assert stolen == []
    log = broker.log_path.read_text()
    assert "as gw-1" in log or "u'gw-1'" in log, log[-2000:]  # the attacker ran as itself


async def test_queued_commands_stay_with_their_gateway(broker: Broker, pki: Pki) -> None:
    async with tls_client(broker, pki, VICTIM, VICTIM_IDS[0], clean_session=False) as gw:
        await gw.subscribe(f"{PREFIX}/{VICTIM}/cmd", qos=1)
    queued = [f"queued {i}".encode() for i in range(5)]  # the victim is away: the broker keeps them
    async with tls_client(broker, pki, "command-post", "command-post") as post:
        for payload in queued:
            await post.publish(f"{PREFIX}/{VICTIM}/cmd", payload, qos=1)
    # Resume the victim's session (its queue) with its ids, then try to wipe it.
    stolen = await takeover_attempts(broker, pki, 4, clean_session=False)
    stolen += await takeover_attempts(broker, pki, 2, clean_session=True)
    victim = Listener()
    async with tls_client(broker, pki, VICTIM, VICTIM_IDS[0], clean_session=False) as gw:
        task = await listen(gw, victim)
        assert await until(lambda: len(victim.received) >= len(queued), 10)
        task.cancel()
    assert stolen == []
    assert victim.received == queued


async def test_oversized_packets_are_refused_by_the_broker(broker: Broker, pki: Pki) -> None:
    victim = Listener()
    async with tls_client(broker, pki, VICTIM, VICTIM_IDS[0]) as gw:
        await gw.subscribe(f"{PREFIX}/{VICTIM}/cmd", qos=1)
        task = await listen(gw, victim)
        with pytest.raises(aiomqtt.MqttError):  # the broker drops the sender
            async with tls_client(broker, pki, "command-post", "command-post") as post:
                await post.publish(f"{PREFIX}/{VICTIM}/cmd", b"\0" * (2 << 20), qos=1, timeout=5)
        async with tls_client(broker, pki, "command-post", "command-post") as post:
            await post.publish(f"{PREFIX}/{VICTIM}/cmd", b"small", qos=1)
        assert await until(lambda: bool(victim.received))
        task.cancel()
    assert victim.received == [b"small"]


async def test_the_agent_runs_under_the_shipped_config(
    tmp_path: Path, broker: Broker, pki: Pki
) -> None:
    """The real agent (MQTT v5, its certificate, its default client id) under the shipped
    broker config: connects, and answers a signed command."""
    gateway_key = create_key(tmp_path / "state" / "keys" / "gateway.key")
    central = create_key(tmp_path / "central.key")
    config = tmp_path / "agent.toml"
    config.write_text(to_toml({
        "gateway": {"id": VICTIM, "site": "town-01", "state_dir": str(tmp_path / "state")},
        "uplink": {"host": "127.0.0.1", "port": broker.port, "tls": True, "ca_file": str(pki.ca),
                   "cert_file": str(pki.cert(VICTIM)), "key_file": str(pki.key(VICTIM)),
                   "reconnect_max": 1.0, "batch_interval": 0.05},
        "keys": {"trust": [central.public_text()]},
        "logging": {"format": "json"},
    }))  # fmt: skip
    results: list[bytes] = []
    async with tls_client(broker, pki, "command-post", "command-post") as post:
        await post.subscribe(f"{PREFIX}/{VICTIM}/cmd/result", qos=1)
        collector = await listen(post, listener := Listener())
        with AgentProcess(config) as agent:
            assert agent.wait_for_log('"uplink.up"', timeout=30), agent.logs()
            # "up" comes before the agent's SUBSCRIBE: a command sent in between would
            # reach nobody (a first session has no subscription yet); the broker logs it
            command_topic = f" {PREFIX}/{VICTIM}/cmd\n"
            assert await until(lambda: command_topic in broker.log_path.read_text(), 30)
            cmd = new_command(central, VICTIM, "ping")
            await post.publish(f"{PREFIX}/{VICTIM}/cmd", seal_command(central, cmd), qos=1)
            assert await until(lambda: bool(listener.received), 20), agent.logs()
        collector.cancel()
        results = listener.received
    message = open_message(results[0], {gateway_key.key_id: gateway_key.public_key})
    assert [(r["command_id"], r["code"]) for r in message.results] == [(cmd.id, "done")]
    assert f"as {VICTIM} (p5" in broker.log_path.read_text()  # MQTT v5, under its certificate id
