"""The control socket in this process: a real agent (real lamppost simulators, real
broker, real SQLite), its ControlServer on a real Unix socket."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cityedge.gateway.control.client import ControlClient
from cityedge.gateway.control.peer import peer_of
from cityedge.gateway.control.protocol import (
    MAX_REQUEST_BYTES,
    AgentUnreachable,
    ControlError,
    encode,
    parse_answer,
    parse_request,
)
from cityedge.gateway.control.server import ControlServer
from tests.technician.conftest import Live
from tests.technician.site import remove, short_dir


async def raw_exchange(path: Path, payload: bytes, *, timeout: float = 10) -> list[bytes]:
    """Send bytes as they are, read answer lines until the server closes."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout)
    try:
        writer.write(payload)
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        await writer.wait_closed()
    return data.splitlines()


async def test_socket_is_mode_0660_and_status_has_every_part(live: Live) -> None:
    assert stat.S_IMODE(live.socket.stat().st_mode) == 0o660
    status = await live.ask("status")
    assert set(status) >= {
        "gateway",
        "version",
        "uptime",
        "uplink",
        "outbox",
        "drivers",
        "devices",
        "clock",
        "overrides",
        "tasks",
    }
    assert status["clock"] == {"synchronised": True, "source": "injected", "detail": "test clock"}
    assert status["devices"]["total"] == 2
    ping = await live.ask("ping")
    assert ping["pid"] == os.getpid()


def test_the_kernel_names_the_peer_and_a_claim_stays_a_claim() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        peer = peer_of(left)
    assert (peer.pid, peer.uid, peer.gid) == (os.getpid(), os.getuid(), os.getgid())
    assert peer.audit()["user"] == peer.user == peer.who != "unknown"
    assert peer.claiming(peer.user).audit() == peer.audit()  # the same name: nothing to add
    claimed = peer.claiming("alice")
    assert claimed.user == peer.user and claimed.who == f"{peer.user} (says alice)"
    assert claimed.audit()["claimed_user"] == "alice"
    assert peer.claiming("x" * 65) == peer and peer.claiming("a\nb") == peer


async def test_bad_requests_get_one_clear_error_each(live: Live) -> None:
    lines = await raw_exchange(
        live.socket,
        b'not json\n[1, 2]\n{"op": "launch"}\n{"op": "read"}\n'
        b'{"op": "write", "device": "lamppost-001", "point": "dimming", "value": [1]}\n'
        b'\xff\xfe\n{"op": "ping"}\n',
    )
    answers = [json.loads(line) for line in lines]
    errors = [a.get("error", "") for a in answers]
    assert "request is not JSON" in errors[0]
    assert "must be a JSON object" in errors[1]
    assert "unknown operation 'launch'; known: check.last" in errors[2]
    assert "read: 'device' must be given as text" in errors[3]
    assert "'value' must be a number, true/false or text" in errors[4]
    assert "not UTF-8" in errors[5]
    assert answers[6]["ok"] is True and [a["ok"] for a in answers[:6]] == [False] * 6
    assert live.server.refused["?"] >= 3


async def test_an_oversized_request_is_refused_and_the_server_goes_on(live: Live) -> None:
    huge = b'{"op": "ping", "pad": "' + b"x" * (MAX_REQUEST_BYTES + 10) + b'"}\n'
    [answer] = await raw_exchange(live.socket, huge)
    assert "request too large" in json.loads(answer)["error"]
    assert (await live.ask("ping"))["version"]


async def test_a_silent_client_is_disconnected(live: Live) -> None:
    live.server.idle_timeout = 0.2
    reader, writer = await asyncio.open_unix_connection(str(live.socket))
    try:
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_live_socket_is_never_stolen_and_a_stale_one_is_replaced(
    live: Live, tmp_path: Path
) -> None:
    rival = ControlServer(live.agent, live.socket)
    with pytest.raises(ControlError, match="another process already serves"):
        await rival.run()
    assert (await live.ask("ping"))["version"]  # the first server still owns its socket

    here = short_dir()
    try:
        stale = here / "stale.sock"
        left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        left.bind(str(stale))
        left.close()  # bound, never listened, never unlinked: what a killed agent leaves
        fresh = ControlServer(live.agent, stale)
        task = asyncio.create_task(fresh.run())
        await asyncio.wait_for(fresh.listening.wait(), 10)
        assert await asyncio.to_thread(ControlClient(stale).running)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert not stale.exists()  # cleaned up on the way out

        not_a_socket = here / "file.sock"
        not_a_socket.write_text("keep me")
        with pytest.raises(ControlError, match="exists and is not a socket"):
            await ControlServer(live.agent, not_a_socket).run()
        assert not_a_socket.read_text() == "keep me"

        too_long = here / ("x" * 120) / "c.sock"
        with pytest.raises(ControlError, match="a Unix socket path may have 107"):
            await ControlServer(live.agent, too_long).run()
    finally:
        remove(here)


async def test_read_rejects_unknown_devices_and_points_by_name(live: Live) -> None:
    with pytest.raises(ControlError, match="unknown device 'lampost-001'; did you mean"):
        await live.ask("read", device="lampost-001")
    with pytest.raises(ControlError, match="has no point 'brightness'; points: "):
        await live.ask("read", device="lamppost-001", points=["brightness"])
    data = await live.ask("read", device="lamppost-001", points="dimming")
    assert data["readings"][0]["value"] == live.street.register("lamppost-001", "dimming")


async def test_a_dead_device_is_an_error_not_a_hang(live: Live) -> None:
    await live.street.switch_off("lamppost-002")
    with pytest.raises(ControlError, match="cannot read lamppost-002: unreachable"):
        await live.ask("read", device="lamppost-002", points=["dimming"], timeout=3)
    with pytest.raises(ControlError, match="cannot read the current value"):
        await live.ask("write", device="lamppost-002", point="dimming", value="20", **{"for": 60})
    assert live.server.overrides.active() == []


async def test_check_results_are_kept_for_the_maintenance_page(live: Live) -> None:
    assert await live.ask("check.last") is None
    results = [
        {"name": "clock", "status": "ok", "detail": "synchronised", "remedy": ""},
        {"name": "disk", "status": "warn", "detail": "8% free", "remedy": "free space"},
    ]
    answer = await live.ask("check.record", ts=1.0e9, results=results)
    assert answer == {"recorded": 2, "status": "warn"}
    last = await live.ask("check.last")
    assert last["results"] == results and last["user"]
    with pytest.raises(ControlError, match=r"results\[0\]\.status"):
        await live.ask("check.record", ts=1.0, results=[{**results[0], "status": "great"}])
    saved = json.loads((live.directory / "state" / "last-check.json").read_text())
    assert saved["status"] == "warn"


def test_no_agent_is_said_plainly(tmp_path: Path) -> None:
    with pytest.raises(AgentUnreachable, match="no control socket at"):
        ControlClient(tmp_path / "nothing.sock").call("ping")
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(AgentUnreachable):
        ControlClient(plain).call("ping")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_request_parsing_takes_any_bytes(line: bytes) -> None:
    try:
        op, args = parse_request(line)
    except ControlError as exc:
        assert str(exc)
    else:
        assert isinstance(op, str) and 0 < len(op) <= 32 and isinstance(args, dict)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    op=st.sampled_from(
        [
            "status",
            "read",
            "write",
            "override.end",
            "check.record",
            "outbox",
            "forwarders",
            "devices",
            "x" * 40,
            "",
            "ping",
        ]
    ),
    args=st.dictionaries(
        st.sampled_from(["device", "point", "points", "value", "for", "timeout", "ts", "results"]),
        json_values,
        max_size=5,
    ),
)
def test_every_answer_is_one_json_line_whatever_the_request(
    offline_server: ControlServer, op: str, args: dict[str, object]
) -> None:
    from cityedge.gateway.control.peer import UNKNOWN

    line = encode({"op": op, **args})
    loop = asyncio.new_event_loop()
    try:
        answer = loop.run_until_complete(offline_server.answer(line, UNKNOWN))
    finally:
        loop.close()
    assert answer.endswith(b"\n") and answer.count(b"\n") == 1
    try:
        parse_answer(answer.rstrip(b"\n"))
    except ControlError as exc:
        assert "internal error" not in str(exc)


def test_the_operations_doc_lists_every_operation(offline_server: ControlServer) -> None:
    from cityedge.gateway.diagnostics.runner import GROUPS
    from tests.support.agent_process import ROOT

    doc = (ROOT / "docs" / "operations.md").read_text()
    protocol = doc[doc.index("### Protocol") : doc.index("## Local overrides")]
    documented = re.findall(r"^\| `([a-z.]+)` \|", protocol, re.MULTILINE)
    assert sorted(documented) == offline_server.operations
    checks = doc[doc.index("## `cityedge check`") : doc.index("## `cityedge support-bundle`")]
    assert re.findall(r"^\| `([a-z]+)` \|", checks, re.MULTILINE) == list(GROUPS)


@pytest.fixture(scope="module")
def offline_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlServer]:
    """A server over an agent whose devices do not exist (reads fail fast: refused)."""
    from cityedge.gateway.config import load_config
    from cityedge.gateway.runtime import Agent
    from cityedge.protocol.key_files import create_key
    from cityedge.street.broker import free_port
    from tests.technician.site import write_config

    directory = tmp_path_factory.mktemp("offline")
    create_key(directory / "state" / "keys" / "gateway.key")
    device = {
        "name": "lamppost-001",
        "profile": "lamppost",
        "host": "127.0.0.1",
        "port": free_port(),
        "timeout": 0.2,
        "retries": 0,
    }
    config = write_config(
        directory,
        broker_port=free_port(),
        socket=directory / "c.sock",
        modbus=[{"name": "street", "devices": [device]}],
    )
    agent = Agent(load_config(config))
    yield ControlServer(agent, request_timeout=5)
    agent.commands.replay.close()
    agent.outbox.close()
