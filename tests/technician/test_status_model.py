"""The status read-model: dataclasses → JSON → dataclasses unchanged, its keys the
ones docs/operations.md lists, and a real agent's answers read back byte for byte."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import pytest

from cityedge.gateway.control import codec
from cityedge.gateway.control.protocol import answer_ok, encode
from cityedge.gateway.control.status import (
    ClockState,
    DeviceCounts,
    DeviceStatus,
    DriverStatus,
    GatewayId,
    HealthStatus,
    OutboxStatus,
    OverrideStatus,
    Shape,
    Status,
    TaskStatus,
    UplinkStatus,
)
from cityedge.sdk.model import DeviceState
from tests.support.agent_process import ROOT
from tests.technician.conftest import Live
from tests.technician.test_control_server import raw_exchange

OUTBOX = OutboxStatus(
    rows={"telemetry": 12, "alarm": 1},
    depth=14,
    bytes=4096,
    oldest_ts=1_700_000_000.25,
    oldest_age=3.5,
    sealed_unacked=2,
    last_seq=99,
    pending=1,
    evicted={"telemetry": 7},
    commits=40,
    rows_committed=400,
    disk_full=True,
    set_aside="outbox.db.corrupt-1700000000",
)
OVERRIDE = OverrideStatus(
    device="lamppost-007",
    point="dimming",
    value=100,
    previous=42.5,
    started=1_700_000_000.0,
    until=1_700_001_800.0,
    user="alice",
    uid=1000,
    restore_failures=2,
    last_error="timeout",
    next_attempt=1_700_001_900.0,
    remaining=0.0,
    restoring=True,
)


def full_status() -> Status:
    """Every optional part given, values of every kind (a JSON int stays an int)."""
    return Status(
        gateway=GatewayId(id="gw-7", site="town-07"),
        version="1.2.3",
        started=1_700_000_000.0,
        uptime=86_400,
        config_digest="ab" * 32,
        uplink=UplinkStatus(
            state="down",
            since=1_700_000_100.5,
            broker="mqtt.example:8883",
            tls=True,
            connects=3,
            failures=4,
            last_error="connection refused",
            messages_sent=10,
            entries_sent=100,
            historical_sent=20,
            commands_received=1,
        ),
        outbox=OUTBOX,
        drivers=(
            DriverStatus("street", "modbus", True, 0, None, 2, {"up": 1, "down": 1}),
            DriverStatus("radio", None, False, 5, "serial port gone", 0, {}),
        ),
        devices=DeviceCounts(total=2, unknown=0, up=1, degraded=0, down=1),
        clock=ClockState(False, "timedatectl", "NTPSynchronized=no"),
        overrides=(OVERRIDE, OverrideStatus(**{**_fields(OVERRIDE), "value": "on", "uid": None})),
        tasks=(TaskStatus("control", True, 1, "boom", 1_700_000_050.0),),
    )


def empty_status() -> Status:
    """Nothing known yet: no drivers, no overrides, every nullable field null."""
    nothing: dict[str, Any] = {
        "rows": {},
        "evicted": {},
        "oldest_ts": None,
        "oldest_age": None,
        "set_aside": None,
    }
    outbox = OutboxStatus(**{**_fields(OUTBOX), **nothing})
    empty = {"outbox": outbox, "drivers": (), "overrides": (), "tasks": ()}
    return Status(**{**_fields(full_status()), **empty, "clock": ClockState(None, "none", "")})


def _fields(shape: Any) -> dict[str, Any]:
    return {name: getattr(shape, name) for name in codec._names(type(shape))}


@pytest.mark.parametrize("status", [full_status(), empty_status()], ids=["full", "empty"])
def test_a_status_round_trips_through_json_unchanged(status: Status) -> None:
    line = answer_ok(status.to_json())
    back = Status.from_json(json.loads(line)["data"])
    assert back == status
    assert answer_ok(back.to_json()) == line


def test_a_device_row_is_its_health_then_its_type() -> None:
    health = HealthStatus("lp-1", "street", "degraded", 1.0, 2.0, 12.5, 9, {"crc": 2}, 2, "noisy")
    row = DeviceStatus(*_fields(health).values(), type="lamppost")  # type: ignore[misc]
    assert list(row.to_json()) == [*health.to_json(), "type"]
    assert DeviceStatus.from_json(json.loads(encode(row.to_json()))) == row
    assert HealthStatus.from_json(row.to_json()) == health  # a newer key is left aside


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda d: d["uplink"].update(tls="yes"), "uplink.tls: str is not bool"),
        (lambda d: d["outbox"].pop("depth"), "outbox.depth: missing"),
        (lambda d: d["drivers"][1].update(restarts=True), r"drivers\[1\]\.restarts: bool is not"),
        (lambda d: d["overrides"][0].update(value=[1]), r"overrides\[0\]\.value: list is not"),
        (lambda d: d.update(tasks={}), "tasks: expected a list, got dict"),
        (lambda d: d["outbox"]["rows"].update(alarm="1"), "outbox.rows.alarm: str is not int"),
    ],
)
def test_a_status_that_does_not_fit_names_the_field(change: Any, says: str) -> None:
    data = full_status().to_json()
    change(data)
    with pytest.raises(codec.ShapeError, match=says):
        Status.from_json(data)


def test_device_counts_have_one_field_per_device_state() -> None:
    assert codec._names(DeviceCounts) == ("total", *(str(s) for s in DeviceState))


def documented() -> dict[str, list[str]]:
    """The key list of docs/operations.md, references ("the keys of …") expanded."""
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("The keys of the `status`", 1)[1].split("\nLimits:", 1)[0]
    table: dict[str, list[str]] = {}
    for name, cell in re.findall(r"^- `([^`]+)`: (.+)$", section, re.MULTILINE):
        keys: list[str] = []
        for part in cell.split(", "):
            ref = re.fullmatch(r"(?:then )?the keys of `([^`]+)`(?: but `([^`]+)`)?", part)
            if ref:
                keys += [k for k in table[ref[1]] if k != ref[2]]
            else:
                keys.append(part.strip("`"))
        table[name] = keys
    return table


MODEL: dict[str, type[Any]] = {
    "status": Status,
    "status.gateway": GatewayId,
    "status.uplink": UplinkStatus,
    "status.outbox": OutboxStatus,
    "status.drivers[]": DriverStatus,
    "status.devices": DeviceCounts,
    "status.clock": ClockState,
    "status.overrides[]": OverrideStatus,
    "status.tasks[]": TaskStatus,
    "devices[]": DeviceStatus,
    "overrides[]": OverrideStatus,
    "forwarders.health[]": HealthStatus,
}


def test_the_documented_keys_are_the_models_fields() -> None:
    docs = documented()
    assert set(docs) == {*MODEL, "outbox", "forwarders"}
    for name, shape in MODEL.items():
        assert docs[name] == list(codec._names(shape)), name
        assert issubclass(shape, Shape) or shape is ClockState
    assert docs["outbox"] == ["path", *codec._names(OutboxStatus)]


async def test_a_running_agents_answers_have_the_documented_keys_and_read_back_exactly(
    live: Live,
) -> None:
    deadline = time.monotonic() + 20
    while not all(h.state == "up" for h in live.agent.device_health()):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    await live.ask("write", device="lamppost-001", point="dimming", value="55", **{"for": 60})
    frozen = time.time()
    live.server.overrides.now = lambda: frozen  # `status` and `overrides` at the same instant
    ops = [b'{"op":"%s"}\n' % op for op in (b"status", b"devices", b"overrides", b"outbox")]
    lines = await raw_exchange(live.socket, b"".join(ops))
    status, devices, overrides, outbox = (json.loads(line)["data"] for line in lines)
    docs = documented()

    def keys_of(data: dict[str, Any], name: str) -> None:
        assert list(data) == docs[name], name
        for key, value in data.items():
            inner = f"{name}.{key}"
            if isinstance(value, list) and f"{inner}[]" in docs:
                for item in value:
                    keys_of(item, f"{inner}[]")
            elif isinstance(value, dict) and inner in docs:
                keys_of(value, inner)

    keys_of(status, "status")
    assert status["overrides"] and status["drivers"] and status["tasks"]
    for row in devices:
        keys_of(row, "devices[]")
    for row in overrides:
        keys_of(row, "overrides[]")
    assert list(outbox) == docs["outbox"]
    assert overrides == status["overrides"]
    # read back and sent again: byte for byte what the agent sent
    assert answer_ok(Status.from_json(status).to_json()) == lines[0] + b"\n"
    again = [DeviceStatus.from_json(row).to_json() for row in devices]
    assert answer_ok(again) == lines[1] + b"\n"


def test_the_page_renders_every_part_of_a_status_from_attributes() -> None:
    from cityedge.gateway.maintenance.page import render

    row = DeviceStatus("lp-1", "street", "down", None, None, None, 3, {"timeout": 3}, 3, None, None)
    html = render(full_status(), [row], None, now=1_700_001_000.0)
    assert "gw-7" in html and "town-07" in html and "connection refused" in html
    assert "lamppost-007.dimming" in html and "serial port gone" in html
    assert "not synchronised" in html and "1/2 up" in html and "no reply in time (×3)" in html
