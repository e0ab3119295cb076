"""Local overrides: the command post's policy, a time limit, the previous value back,
the local user in the audit, and a `local.override` event the command post verifies."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.gateway.control.overrides import Override, Overrides
from cityedge.gateway.control.peer import Peer
from cityedge.gateway.control.protocol import ControlError
from cityedge.gateway.control.values import ValueProblem, parse_duration, parse_value
from cityedge.gateway.supervisor import TaskHealth
from cityedge.protocol.key_files import load_signing_key
from cityedge.sdk.model import PointAccess, PointInfo
from tests.support.command_post import CommandPost
from tests.technician.conftest import Live

ME = pwd.getpwuid(os.getuid()).pw_name
TECHNICIAN = Peer(4242, os.getuid(), os.getgid())


async def test_override_is_written_restored_and_reported_to_the_command_post(live: Live) -> None:
    key = load_signing_key(live.directory / "state" / "keys" / "gateway.key")
    async with CommandPost(live.broker.port, key.public_key) as post:
        before = live.street.register("lamppost-001", "dimming")
        answer = await live.ask(
            "write", device="lamppost-001", point="dimming", value="25", **{"for": 1.5}
        )
        assert answer["previous"] == before and answer["value"] == 25
        assert answer["readback"] == 25 and answer["user"] == ME
        assert live.street.register("lamppost-001", "dimming") == 25

        def ended() -> bool:
            return any(e.kind == "local.override" and e.active is False for e in post.events)

        assert await post.wait_for(ended, timeout=30), live.server.overrides.to_json()
        assert live.street.register("lamppost-001", "dimming") == before
        started, finished = [e for e in post.events if e.kind == "local.override"]
        assert started.active is True and started.source == "lamppost-001"
        assert started.data["user"] == ME and started.data["uid"] == os.getuid()
        assert started.data["point"] == "dimming" and started.data["value"] == 25
        assert finished.data["previous"] == before and finished.data["ended"] == "expired"
        assert "restored" not in finished.data and "cleared_by" not in finished.data
        assert post.rejected == []  # signed like everything else the gateway sends
    saved = json.loads((live.directory / "state" / "overrides.json").read_text())
    assert saved == {"overrides": []}
    assert (await live.ask("status"))["overrides"] == []


async def test_denied_writes_never_reach_the_device(live: Live) -> None:
    writes = live.street.write_requests("lamppost-002")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"point": "dimming", "value": 101}, "denied by local policy: 101 is above"),
        ({"point": "dimming", "value": "-3"}, "denied by local policy: -3 is below"),
        ({"point": "power", "value": 10}, "does not allow writing 'power'"),
        ({"point": "lamp_on", "value": "perhaps"}, "expected on/off"),
        ({"point": "comms_timeout", "value": 60}, "does not allow writing 'comms_timeout'"),
    ]
    for args, message in cases:
        with pytest.raises(ControlError, match=message):
            await live.ask("write", device="lamppost-002", **args, **{"for": 60})
    assert live.street.write_requests("lamppost-002") == writes
    assert live.server.overrides.denied_total == 4  # the bad value never got to the policy
    assert live.server.overrides.active() == []


async def test_a_second_override_keeps_the_original_value_to_restore(live: Live) -> None:
    original = live.street.register("lamppost-002", "lamp_on")
    await live.ask("write", device="lamppost-002", point="lamp_on", value="off", **{"for": 600})
    second = await live.ask(
        "write", device="lamppost-002", point="lamp_on", value=True, **{"for": 600}
    )
    assert second["replaced"] is True and second["previous"] == original
    await live.ask("override.end", device="lamppost-002", point="lamp_on")
    assert live.street.register("lamppost-002", "lamp_on") == original
    assert live.server.overrides.active() == []


async def test_an_override_outlives_a_restart_and_a_dead_device(live: Live) -> None:
    """Persisted in the state dir; restored once due, retried while the device is down."""
    clock = [1_000_000.0]
    path = live.directory / "state" / "overrides-restart.json"
    first = Overrides(live.agent, path, device_timeout=2, now=lambda: clock[0])
    before = live.street.register("lamppost-001", "dimming")
    await first.start("lamppost-001", "dimming", "5", 60.0, TECHNICIAN)
    assert live.street.register("lamppost-001", "dimming") == 5
    # the agent "restarts" (a new Overrides reads the file) while the device is off
    await live.street.switch_off("lamppost-001")
    second = Overrides(live.agent, path, device_timeout=2, now=lambda: clock[0])
    [resumed] = second.active()
    assert (resumed.previous, resumed.user) == (before, ME)
    clock[0] += 61
    assert await second.restore_due() == 0  # device down: kept, counted, retried later
    [pending] = second.active()
    assert pending.restore_failures == 1 and pending.last_error
    assert await second.restore_due() == 0  # not before its retry time
    await live.street.switch_on("lamppost-001")
    clock[0] += 10
    assert await second.restore_due() == 1
    assert live.street.register("lamppost-001", "dimming") == before
    assert json.loads(path.read_text()) == {"overrides": []}


async def test_an_unreadable_overrides_file_is_logged_not_fatal(live: Live) -> None:
    path = live.directory / "state" / "broken-overrides.json"
    path.write_text('{"overrides": [{"device": 1}, "nonsense"]}')
    assert Overrides(live.agent, path).active() == []
    path.write_text("{not json")
    assert Overrides(live.agent, path).active() == []


def test_override_records_are_validated() -> None:
    good = Override("lamppost-001", "dimming", 5, 80, 1.0, 2.0, "root", 0)
    assert Override.from_json(good.to_json()) == good
    bad_ones: list[Any] = [{**good.to_json(), "value": [1]}, {**good.to_json(), "extra": 1}, [], {}]
    for bad in bad_ones:
        with pytest.raises(ValueError):
            Override.from_json(bad)


INT_POINT = PointInfo("dimming", "int", "%", PointAccess.READ_WRITE, 0, 100)
BOOL_POINT = PointInfo("lamp_on", "bool", None, PointAccess.READ_WRITE)
MODE_POINT = PointInfo("mode", "text", None, PointAccess.READ_WRITE, choices=("normal", "dark"))


def test_values_are_parsed_by_the_points_kind() -> None:
    assert parse_value(INT_POINT, " 40 ") == 40
    assert parse_value(BOOL_POINT, "ON") is True and parse_value(BOOL_POINT, "0") is False
    assert parse_value(BOOL_POINT, 1) is True
    assert parse_value(MODE_POINT, "dark") == "dark"
    for point, raw in (
        (INT_POINT, "4.5"),
        (INT_POINT, ""),
        (BOOL_POINT, "2"),
        (MODE_POINT, "bright"),
        (INT_POINT, float("nan")),
    ):
        with pytest.raises(ValueProblem):
            parse_value(point, raw)


def test_durations() -> None:
    assert parse_duration("90") == 90
    assert parse_duration("15m") == 900
    assert parse_duration("1h 30m") == 5400
    assert parse_duration("0.5h") == 1800
    for bad in ("", "soon", "1h30", "-5m", "0", "5x", "1e3", "m", "1" * 40):
        with pytest.raises(ValueProblem):
            parse_duration(bad)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_duration_parsing_takes_any_text(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueProblem as exc:
        assert repr(text)[:10] in str(exc) or "duration" in str(exc)
    else:
        assert seconds > 0


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=30), st.integers(), st.floats(), st.booleans()))
def test_value_parsing_takes_anything(raw: str | int | float | bool) -> None:
    for point in (
        INT_POINT,
        BOOL_POINT,
        MODE_POINT,
        PointInfo("energy", "float", "kWh", PointAccess.READ_WRITE),
    ):
        try:
            parse_value(point, raw)
        except ValueProblem as exc:
            assert str(exc).startswith(point.name)


async def test_the_agent_stops_at_once_right_after_an_override(live: Live) -> None:
    """A technician's write, then the stop: the overrides task ends within a second
    (on 3.11 `asyncio.wait_for` swallowed this cancel, and the stop waited 5 s)."""
    for _ in range(200):  # the runtime starts its tasks once it has asked the clock
        if live.agent.tasks.get("overrides", TaskHealth("")).running:
            break
        await asyncio.sleep(0.05)
    await live.agent.overrides.start("lamppost-001", "dimming", "40", 600, TECHNICIAN)
    live.agent.stop()  # in the same turn of the loop as the override's wake-up
    task = live.agent.tasks["overrides"]
    deadline = time.monotonic() + 1.0
    for _ in range(1000):
        if not task.running or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    assert not task.running, "the overrides task ignored the stop"
    assert [t for t in asyncio.all_tasks() if t.get_name() == "overrides"] == []
