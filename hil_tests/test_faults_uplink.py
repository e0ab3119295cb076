"""Fault injection on the command path (issue 19): a backlog of commands queued
while the agent was stopped, an oversized command, and a gateway trying to take
over another's client id — the real agent, a private Mosquitto (the shipped
config with mutual TLS for the takeover), and a verifying command post. Rows go
to the reliability table through `record` of hil_tests/test_faults.py
(CITYEDGE_WRITE_RELIABILITY=1 regenerates docs/reliability.md).

Columns, for commands: produced = commands sent, delivered = commands answered
(or, for the takeover, received by their gateway), lost = sent but never
answered (or read by the wrong gateway)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from cityedge.central.commands import new_command
from cityedge.protocol.commands import MAX_COMMAND_BYTES, command_digest, seal_command
from cityedge.protocol.key_files import create_key
from cityedge.protocol.keys import SigningKey
from cityedge.street.broker import Broker
from hil_tests.fault_site import Row, record
from tests.integration.test_uplink_commands import (
    CMD_TOPIC,
    answer_backlog,
    oversized_command,
    peak_rss_mb,
    publish_all,
)
from tests.security.openssl_pki import make_pki
from tests.security.test_broker_identity import (
    ATTACKER,
    PREFIX,
    VICTIM,
    VICTIM_IDS,
    Listener,
    listen,
    shipped_broker,
    takeover_attempts,
    tls_client,
    until,
)
from tests.support.agent_process import AgentProcess, to_toml
from tests.support.command_post import CommandPost

pytestmark = pytest.mark.timeout(600)


def agent_config(tmp: Path, port: int, central: SigningKey) -> Path:
    doc: dict[str, Any] = {
        "gateway": {"id": "gw-test", "site": "town-01", "state_dir": str(tmp / "state")},
        "uplink": {"host": "127.0.0.1", "port": port, "reconnect_min": 0.2,
                   "reconnect_max": 1.0, "batch_interval": 0.05, "connect_timeout": 3.0},
        "keys": {"trust": [central.public_text()]},
        "logging": {"level": "info", "format": "json"},
    }  # fmt: skip
    path = tmp / "agent.toml"
    path.write_text(to_toml(doc))
    return path


async def test_command_backlog_while_offline(tmp_path: Path) -> None:
    sent = 3000
    key = create_key(tmp_path / "state" / "keys" / "gateway.key")
    central = create_key(tmp_path / "central.key")
    with Broker(workdir=tmp_path / "broker") as broker:
        agent = AgentProcess(agent_config(tmp_path, broker.port, central))
        async with CommandPost(broker.port, key.public_key) as post:
            answered, codes, took = await answer_backlog(broker, central, post, agent, sent)
            # one result per command payload: counted by digest (ids are the sender's)
            duplicated = len(post.results) - len({r["digest"] for r in post.results})
    by_code = ", ".join(f"{c} {n}" for c, n in sorted(codes.items()))
    record(Row("command backlog of 3,000 while offline (answered = sent)", sent, len(answered),
               duplicated, sent - len(answered), took, f"results by code: {by_code}"))  # fmt: skip
    assert len(answered) == sent, codes


async def test_oversized_command_peak_rss_bounded(tmp_path: Path) -> None:
    """A broker without a packet limit (the worst case): the agent's Maximum Packet
    Size keeps the 128 MiB command off its socket, and a command just over the
    command limit is refused by length without being decoded."""
    key = create_key(tmp_path / "state" / "keys" / "gateway.key")
    central = create_key(tmp_path / "central.key")
    with Broker(workdir=tmp_path / "broker") as broker:
        async with CommandPost(broker.port, key.public_key) as post:
            agent = AgentProcess(agent_config(tmp_path, broker.port, central)).start()
            try:
                assert await post.wait_for(lambda: bool(post.states), 30), agent.logs()
                assert agent.proc is not None
                before = peak_rss_mb(agent.proc.pid)
                started = time.monotonic()
                await publish_all(broker.port, CMD_TOPIC, [oversized_command(128 << 20)])
                await publish_all(broker.port, CMD_TOPIC,
                                  [oversized_command(MAX_COMMAND_BYTES + 1024)])  # fmt: skip
                ping = seal_command(central, new_command(central, "gw-test", "ping"))
                await publish_all(broker.port, CMD_TOPIC, [ping])
                ok = await post.wait_for(
                    lambda: any(r["digest"] == command_digest(ping) for r in post.results), 30
                )
                took = time.monotonic() - started
                peak = peak_rss_mb(agent.proc.pid)
            finally:
                agent.stop()
    too_large = [r for r in post.results if str(r["detail"]).startswith("too-large")]
    record(Row("oversized command (peak RSS bounded)", 3, len(too_large) + ok, 0, 0, took,
               f"128 MiB not delivered (Maximum Packet Size), 65 KiB refused by length, ping "
               f"answered; agent peak RSS {before:.0f} -> {peak:.0f} MB"))  # fmt: skip
    assert ok and len(too_large) == 1
    assert peak - before < 16, (before, peak)


async def test_client_id_takeover_refused(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", (VICTIM, ATTACKER, "command-post"))
    attempts, sent = 20, [f"command {i}".encode() for i in range(10)]
    victim = Listener()
    with shipped_broker(tmp_path, pki) as broker:
        async with (
            tls_client(broker, pki, "command-post", "command-post") as post,
            tls_client(broker, pki, VICTIM, VICTIM_IDS[0], clean_session=False) as gw,
        ):
            await gw.subscribe(f"{PREFIX}/{VICTIM}/cmd", qos=1)
            task = await listen(gw, victim)
            attack = asyncio.create_task(takeover_attempts(broker, pki, attempts))
            started = time.monotonic()
            for payload in sent:
                await post.publish(f"{PREFIX}/{VICTIM}/cmd", payload, qos=1)
                await asyncio.sleep(0.1)
            stolen = await attack
            await until(lambda: len(victim.received) >= len(sent) or bool(victim.lost))
            took = time.monotonic() - started
            task.cancel()
    got = len(set(victim.received) & set(sent))
    note = (
        f"{attempts} connects with the victim's client ids and another certificate: "
        f"victim disconnected {len(victim.lost)} times, attacker read {len(stolen)}"
    )
    record(Row("client-id takeover (refused)", len(sent), got, len(victim.received) - got,
               len(sent) - got + len(stolen), took, note))  # fmt: skip
    assert victim.lost == [] and stolen == [] and got == len(sent)
