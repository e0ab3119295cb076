"""Broker confinement on a real Mosquitto with mutual TLS and the shipped ACL
(config/mosquitto/acl): a gateway speaks only under its own topics and reads only
its own commands; another gateway's certificate cannot. The agent refuses broker
certificates that are expired, from the wrong CA or for the wrong host — with a
clear error, and no plaintext fallback."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from cityedge.protocol.key_files import create_key
from cityedge.street.broker import Broker, free_port
from tests.support.agent_process import AgentProcess, to_toml
from tests.technician.certs import Issued, issue, make_ca

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "cityedge/v2/town-01"


@dataclass
class Pki:
    ca: Issued
    server: Issued
    clients: dict[str, Issued]


def tls_listener(port: int, ca: Issued, server: Issued) -> str:
    return "\n".join([
        f"listener {port} 127.0.0.1",
        f"cafile {ca.cert}", f"certfile {server.cert}", f"keyfile {server.key}",
        "require_certificate true", "use_identity_as_username true",
        "allow_anonymous false", f"acl_file {ROOT / 'config' / 'mosquitto' / 'acl'}",
    ])  # fmt: skip


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = make_ca(tmp_path / "pki")
    server = issue(ca, tmp_path / "pki", "broker", server=True)
    clients = {
        name: issue(ca, tmp_path / "pki", name, server=False)
        for name in ("gw-1", "gw-2", "command-post")
    }
    return Pki(ca, server, clients)


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[Broker]:
    port = free_port()
    with Broker(port, default_listener=False, workdir=tmp_path / "broker",
                extra_config=tls_listener(port, pki.ca, pki.server)) as broker:  # fmt: skip
        yield broker


def client(broker: Broker, pki: Pki, name: str) -> aiomqtt.Client:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.load_cert_chain(str(pki.clients[name].cert), str(pki.clients[name].key))
    return aiomqtt.Client("127.0.0.1", broker.port, identifier=name, tls_context=context,
                          timeout=5)  # fmt: skip


async def collect(c: aiomqtt.Client, into: list[tuple[str, bytes]], ready: asyncio.Event) -> None:
    ready.set()
    async for message in c.messages:
        into.append((str(message.topic), bytes(message.payload)))


async def test_gateways_are_confined_to_their_own_topics(tls_broker: Broker, pki: Pki) -> None:
    seen: list[tuple[str, bytes]] = []
    gw1_inbox: list[tuple[str, bytes]] = []
    gw2_inbox: list[tuple[str, bytes]] = []
    async with (
        client(tls_broker, pki, "command-post") as post,
        client(tls_broker, pki, "gw-1") as gw1,
        client(tls_broker, pki, "gw-2") as gw2,
    ):
        await post.subscribe("cityedge/v2/#", qos=1)
        await gw1.subscribe(f"{PREFIX}/gw-1/cmd", qos=1)
        await gw2.subscribe(f"{PREFIX}/gw-1/cmd", qos=1)  # not its own: must get nothing
        await gw2.subscribe(f"{PREFIX}/gw-2/cmd", qos=1)
        ready = [asyncio.Event() for _ in range(3)]
        tasks = [
            asyncio.create_task(collect(post, seen, ready[0])),
            asyncio.create_task(collect(gw1, gw1_inbox, ready[1])),
            asyncio.create_task(collect(gw2, gw2_inbox, ready[2])),
        ]
        for event in ready:
            await event.wait()
        await gw1.publish(f"{PREFIX}/gw-1/telemetry", b"gw-1 own", qos=1)
        await gw2.publish(f"{PREFIX}/gw-1/telemetry", b"gw-2 forging gw-1", qos=1)
        await gw2.publish(f"{PREFIX}/gw-1/cmd", b"gw-2 commanding gw-1", qos=1)
        await gw2.publish(f"{PREFIX}/gw-2/telemetry", b"gw-2 own", qos=1)
        await post.publish(f"{PREFIX}/gw-1/cmd", b"command for gw-1", qos=1)
        await post.publish(f"{PREFIX}/gw-2/cmd", b"command for gw-2", qos=1)
        # Wait for what must arrive, then leave room for what must not.
        for _ in range(100):
            if len(seen) >= 4 and gw1_inbox and gw2_inbox:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        for task in tasks:
            task.cancel()
    payloads = {p for _, p in seen}
    assert {b"gw-1 own", b"gw-2 own", b"command for gw-1", b"command for gw-2"} <= payloads
    assert b"gw-2 forging gw-1" not in payloads  # dropped by the broker's ACL
    assert b"gw-2 commanding gw-1" not in payloads
    assert [p for _, p in gw1_inbox] == [b"command for gw-1"]
    assert [p for _, p in gw2_inbox] == [b"command for gw-2"]  # gw-1's cmd never reached it


async def test_a_client_without_certificate_is_refused(tls_broker: Broker, pki: Pki) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", tls_broker.port, tls_context=context, timeout=3):
            pass


@pytest.mark.parametrize("fault", ["expired", "wrong-ca", "wrong-host"])
async def test_agent_refuses_bad_broker_certificates(tmp_path: Path, pki: Pki, fault: str) -> None:
    pki_dir = tmp_path / "pki"
    if fault == "expired":
        server = issue(
            pki.ca, pki_dir, "expired", server=True,
            valid_from=dt.timedelta(days=-30), valid_for=dt.timedelta(days=1),
        )  # fmt: skip
        ca_for_broker = pki.ca
    elif fault == "wrong-ca":
        other = make_ca(pki_dir, "other-ca")
        server = issue(other, pki_dir, "impostor", server=True)
        ca_for_broker = pki.ca  # it still checks our clients against the city CA
    else:
        server = issue(pki.ca, pki_dir, "elsewhere", server=True, hosts=("broker.example",))
        ca_for_broker = pki.ca
    port = free_port()
    create_key(tmp_path / "state" / "keys" / "gateway.key")
    config = tmp_path / "agent.toml"
    config.write_text(to_toml({
        "gateway": {"id": "gw-1", "site": "town-01", "state_dir": str(tmp_path / "state")},
        "uplink": {"host": "127.0.0.1", "port": port, "tls": True, "ca_file": str(pki.ca.cert),
                   "cert_file": str(pki.clients["gw-1"].cert),
                   "key_file": str(pki.clients["gw-1"].key), "reconnect_max": 1.0},
        "logging": {"format": "json"},
    }))  # fmt: skip
    with (
        Broker(port, default_listener=False, workdir=tmp_path / "broker",
               extra_config=tls_listener(port, ca_for_broker, server)) as broker,
        AgentProcess(config) as agent,
    ):  # fmt: skip
        assert agent.wait_for_log("uplink.down", timeout=20), agent.logs()
        await asyncio.sleep(1.5)
        logs = agent.logs()
        assert "uplink.up" not in logs
        assert "CERTIFICATE_VERIFY_FAILED" in logs or "certificate verify failed" in logs
        if fault == "expired":
            assert "expired" in logs
        if fault == "wrong-host":
            assert "Hostname mismatch" in logs or "IP address mismatch" in logs

        # calm retries, not a busy loop: counted at the broker over a measured window, no
        # more than one per shortest backoff delay (0.5 s - 20 % jitter); a slow machine
        # makes fewer, never more
        # mosquitto logs an accepted connection as "New connection from …", except when the
        # handshake already failed inside accept() (the client's alert was in by then): that
        # one is logged only as "Client connection from … failed"
        def attempts() -> int:
            log = broker.log_path.read_text()
            return log.count("New connection from") + log.count("Client connection from")

        first, started = attempts(), time.monotonic()
        assert first >= 1
        await asyncio.sleep(3)
        window, made = time.monotonic() - started, attempts() - first
        assert made <= window / 0.4 + 1, (made, window)
        # a TLS refusal is the broker answering: full backoff, no TCP probe cutting it short
        assert "uplink.broker_back" not in agent.logs()
