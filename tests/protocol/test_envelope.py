"""Sealing and opening: round trips for every kind, bodies built by concatenation are
the same bytes a MessagePack library would write, and strict decoding names the field."""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import replace
from enum import IntEnum
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.protocol.commands import open_command, seal_command
from cityedge.protocol.decoding import EnvelopeError, Reason
from cityedge.protocol.dictionary import DICTIONARY
from cityedge.protocol.entries import command_result, event_entry, reading_entry, result_entry
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.opening import open_message
from cityedge.protocol.readings import array_header
from cityedge.protocol.sealing import (
    COMMAND_CONTEXT,
    MESSAGE_CONTEXT,
    seal,
    seal_object,
)
from cityedge.sdk.model import (
    Command,
    CommandResult,
    Event,
    Quality,
    Reading,
    ResultCode,
    Severity,
)

GW = SigningKey.from_seed(bytes([7]) * 32)
CP = SigningKey.from_seed(bytes([9]) * 32)
TRUST = {GW.key_id: GW.public_key}
CP_TRUST = {CP.key_id: CP.public_key}


def sealed(
    kind: str, entries: list[bytes], *, seq: int = 1, hist: bool = False, compress: bool = True
) -> bytes:
    return seal(
        GW,
        gateway="gw-1",
        site="old-town",
        kind=kind,
        seq=seq,
        ts=1700000000.5,
        historical=hist,
        entries=entries,
        compress=compress,
    )


def as_carried(readings: list[Reading]) -> list[Reading]:
    """What a v2 message gives back: the same readings in the same order, their
    times to the millisecond."""
    return [replace(r, ts=round(r.ts * 1000) / 1000) for r in readings]


def resign(body: Any, key: SigningKey = GW, context: bytes = MESSAGE_CONTEXT) -> bytes:
    raw = body if isinstance(body, bytes) else msgpack.packb(body)
    return bytes(
        msgpack.packb({"v": 2, "kid": key.key_id, "body": raw, "sig": key.sign(context + raw)})
    )


def body_of(payload: bytes) -> dict[str, Any]:
    return dict(msgpack.unpackb(msgpack.unpackb(payload)["body"]))


# --- round trips ----------------------------------------------------------------------------


def test_telemetry_round_trip_keeps_types_units_and_quality() -> None:
    readings = [
        Reading("lamppost-03", "power", 41.5, 1700000000.25, "W"),
        Reading("lamppost-03", "lamp_on", True, 1700000000.25),
        Reading("lamppost-03", "hours", 12345, 1700000000.25, "h"),
        Reading("panel-1", "message", "Road works", 1700000000.25, None, Quality.SUBSTITUTED),
        Reading("meter-1", "energy", 0, 1700000000.0, "Wh", Quality.CLOCK_UNSYNCED),
    ]
    message = open_message(sealed("telemetry", [reading_entry(r) for r in readings], seq=9), TRUST)
    assert message.readings == readings
    assert [type(r.value) for r in message.readings] == [float, bool, int, str, int]
    assert (message.gateway, message.site, message.kind, message.seq) == (
        "gw-1",
        "old-town",
        "telemetry",
        9,
    )
    assert message.key_id == GW.key_id
    assert message.ts == 1700000000.5 and message.historical is False
    assert message.events == [] and message.results == [] and message.state == {}


def test_reading_entries_leave_out_trailing_defaults() -> None:
    assert msgpack.unpackb(reading_entry(Reading("d", "p", 1, 2.0))) == ["d", "p", 1, 2.0]
    assert msgpack.unpackb(reading_entry(Reading("d", "p", 1, 2.0, "W"))) == ["d", "p", 1, 2.0, "W"]
    assert msgpack.unpackb(reading_entry(Reading("d", "p", 1, 2, None, Quality.SUBSTITUTED))) == [
        "d",
        "p",
        1,
        2.0,
        None,
        "substituted",
    ]


def test_event_round_trip_and_odd_data_is_carried_as_text() -> None:
    events = [
        Event("lamppost.lamp_failure", "lamppost-03", 1.5, Severity.ALARM, True, {"lamp": 2}),
        Event("lamppost.lamp_failure", "lamppost-03", 2.5, Severity.ALARM, False),
        Event("gateway.started", "agent", 3.5),
        Event("outbox.evicted", "outbox", 4.5, Severity.WARNING, None, {"rows": 3}),
    ]
    message = open_message(sealed("event", [event_entry(e) for e in events], hist=True), TRUST)
    assert message.events == events
    assert message.historical is True
    odd = Event(
        "x.y",
        "agent",
        1.0,
        data={
            7: "int key",  # type: ignore[dict-item]  # a driver may do it anyway
            "path": Path("/var/lib"),
            "set": {"b", "a"},
            "huge": 1 << 80,
            "nested": {"t": (1, 2)},
            "severity": Severity.ALARM,
            "text": "bad \udcff surrogate",
        },
    )
    (decoded,) = open_message(sealed("event", [event_entry(odd)]), TRUST).events
    assert decoded.data == {
        "7": "int key",
        "path": "/var/lib",
        "set": ["a", "b"],
        "huge": str(1 << 80),
        "nested": {"t": [1, 2]},
        "severity": "alarm",
        "text": "bad ? surrogate",
    }


def test_result_round_trip() -> None:
    digests = [bytes([i]) * 16 for i in range(3)]
    results = [
        CommandResult("c-1", ResultCode.DONE, "", 80, True, command_digest=digests[0]),
        CommandResult("c-2", ResultCode.DENIED, "dim_level above 100 is not allowed",
                      command_digest=digests[1]),
        CommandResult("", ResultCode.BAD_SIGNATURE, "x" * 5000, data={"kid": "abc"},
                      command_digest=digests[2]),
    ]  # fmt: skip
    message = open_message(sealed("result", [result_entry(r, 10.0) for r in results]), TRUST)
    got = [command_result(e) for e in message.results]
    assert got[:2] == results[:2]
    assert got[2].detail == "x" * 4096  # cut to the limit the decoder enforces
    assert got[2].data == {"kid": "abc"}
    assert [e["ts"] for e in message.results] == [10.0] * 3
    assert message.results[0]["code"] is ResultCode.DONE
    assert [e["digest"] for e in message.results] == digests
    with pytest.raises(ValueError, match="command_digest"):  # a result names its command
        result_entry(CommandResult("c-1", ResultCode.DONE), 10.0)


def test_state_round_trip_and_needs_a_status() -> None:
    payload = seal_object(
        GW,
        gateway="gw-1",
        site="old-town",
        kind="state",
        seq=4,
        ts=5.0,
        data={"status": "online", "devices": {"lamppost-03": "up"}},
    )
    message = open_message(payload, TRUST)
    assert message.state == {"status": "online", "devices": {"lamppost-03": "up"}}
    assert message.entries == []
    with pytest.raises(ValueError, match="status"):
        seal_object(GW, gateway="gw-1", site="s", kind="state", seq=1, ts=1.0, data={"x": 1})
    with pytest.raises(ValueError, match="kind 'telemetry'"):
        seal_object(GW, gateway="gw-1", site="s", kind="telemetry", seq=1, ts=1.0, data={})
    state_body = body_of(payload)
    state_body["data"] = {"devices": 3}
    with pytest.raises(EnvelopeError, match=r"body\.data\.status"):
        open_message(resign(state_body), TRUST)


def test_command_round_trip_and_kid_comes_from_the_envelope() -> None:
    cmd = Command(
        "c-9",
        "gw-1",
        "lamppost-03",
        "write",
        {"point": "dim_level", "value": 80},
        1000.0,
        1060.0,
        key_id="ignored",
    )
    opened = open_command(seal_command(CP, cmd), CP_TRUST)
    assert opened == Command(
        "c-9",
        "gw-1",
        "lamppost-03",
        "write",
        {"point": "dim_level", "value": 80},
        1000.0,
        1060.0,
        CP.key_id,
    )
    gateway_wide = Command("c-10", "gw-1", None, "ping", {}, 1.0, 2.0, "")
    assert open_command(seal_command(CP, gateway_wide), CP_TRUST).device is None


# --- concatenation equals encoding ---------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 300])
def test_sealed_body_is_byte_identical_to_a_library_encoding(n: int) -> None:
    # the readings block built here from the rules of docs/protocol.md §6.1, by hand
    readings = [Reading(f"lamppost-{i % 7:02d}", "power", i * 0.5, 1.0 + i // 7, "W")
                for i in range(n)]  # fmt: skip
    entries = [reading_entry(r) for r in readings]
    payload = sealed("telemetry", entries, seq=77, compress=False)
    body = msgpack.unpackb(payload)["body"]
    devices = list(dict.fromkeys(r.device for r in readings))
    points = list(dict.fromkeys((0 if r.value * 2 % 2 == 0 else 1) for r in readings))
    groups: dict[tuple[int, int], list[Any]] = {}
    for r in readings:
        k = 0 if r.value * 2 % 2 == 0 else 1
        row = groups.setdefault((devices.index(r.device), round(r.ts * 1000) - 1000), [])
        row += [points.index(k), int(r.value * 10**k)]
    steps, last = [], (-1, 0)  # device and dt: steps from the group before
    for (d, dt), row in groups.items():
        steps.append([d - last[0] - 1, dt - last[1], 0, *row])
        last = (d, dt)
    block = [1000 if n else 0, devices, [["power", "W", k] for k in points], steps]
    expected = msgpack.packb(
        {
            "v": 2,
            "gw": "gw-1",
            "site": "old-town",
            "kind": "telemetry",
            "seq": 77,
            "ts": 1700000000.5,
            "hist": False,
            "data": block,
        }
    )
    assert body == expected
    assert open_message(payload, TRUST).readings == as_carried(readings)
    compressed = sealed("telemetry", entries, seq=77)
    assert open_message(compressed, TRUST).readings == as_carried(readings)
    if n >= 17:
        assert len(compressed) < len(payload)  # deflate pays on a realistic message


@pytest.mark.parametrize("n", [0, 15, 16, 0xFFFF, 0x10000, 0xFFFFFFFF])
def test_array_headers_match_msgpack(n: int) -> None:
    packer = msgpack.Packer()
    assert array_header(n) == packer.pack_array_header(n)


def test_floats_travel_scaled_then_float32_then_float64() -> None:
    values = [230.1, 0.347, 230.0, -1.5, 0.1 + 0.2, 2.0**-30, 1e300, -0.0, math.inf, 3.4028234e38]
    readings = [Reading("d", f"p{i}", v, 1.0) for i, v in enumerate(values)]
    payload = sealed("telemetry", [reading_entry(r) for r in readings], compress=False)
    block = msgpack.unpackb(msgpack.unpackb(payload)["body"])["data"]
    assert [p[2] if len(p) > 2 else None for p in block[2]] == [1, 3, 0, 1] + [None] * 6
    assert block[3][0][3:][1::2][:4] == [2301, 347, 230, -15]
    raw = msgpack.unpackb(payload)["body"]
    for v in (2.0**-30, -0.0, math.inf):  # float32 holds these exactly: ca + 4 bytes
        assert b"\xca" + struct.pack(">f", v) in raw
    for v in (0.1 + 0.2, 1e300):  # these need all 64 bits
        assert b"\xcb" + struct.pack(">d", v) in raw
    got = open_message(payload, TRUST).readings
    assert [(type(r.value), r.value) for r in got] == [(float, v) for v in values]
    assert math.copysign(1.0, got[7].value) == -1.0  # type: ignore[arg-type]


names = st.text(min_size=0, max_size=20)
values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1),
    st.floats(allow_nan=False),
    st.text(max_size=30),
)
readings_st = st.builds(
    Reading,
    device=names,
    point=names,
    value=values,
    ts=st.floats(min_value=0, max_value=4e9),
    unit=st.none() | st.text(max_size=5),
    quality=st.sampled_from(Quality),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(readings_st, max_size=40), st.integers(0, (1 << 63) - 1), st.booleans(), st.booleans()
)
def test_any_readings_round_trip(
    readings: list[Reading], seq: int, hist: bool, compress: bool
) -> None:
    readings = [replace(r, ts=r.ts % 60 + 1.7e9) for r in readings]  # a message spans a minute
    entries = [reading_entry(r) for r in readings]
    payload = sealed("telemetry", entries, seq=seq, hist=hist, compress=compress)
    message = open_message(payload, TRUST)
    assert message.readings == as_carried(readings)
    assert [type(r.value) for r in message.readings] == [
        type(r.value) for r in as_carried(readings)
    ]
    assert (message.seq, message.historical) == (seq, hist)


def test_encoders_refuse_only_what_code_gets_wrong() -> None:
    with pytest.raises(ValueError, match="finite"):
        reading_entry(Reading("d", "p", 1, math.nan))
    with pytest.raises(ValueError):
        reading_entry(Reading("d", "p", 1, 1.0, quality="bad"))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        event_entry(Event("k", "s", 1.0, severity="loud"))  # type: ignore[arg-type]

    # values from the outside world are carried: subclasses as their plain type
    # (a numpy float, an IntEnum), the rest as text
    class Level(IntEnum):
        FULL = 100

    class Milliamps(float):
        pass

    odd = [
        Reading("d", "p", Milliamps(2.5), 1.0),
        Reading("d", "q", Level.FULL, 1.0),
        Reading("d", "r", None, 1.0),  # type: ignore[arg-type]
        Reading("d", "s", b"\x01", 1.0),  # type: ignore[arg-type]
    ]
    got = open_message(sealed("telemetry", [reading_entry(r) for r in odd]), TRUST).readings
    got.sort(key=lambda r: r.point)
    assert [(type(r.value), r.value) for r in got] == [
        (float, 2.5),
        (int, 100),
        (str, "None"),
        (str, "b'\\x01'"),
    ]
    weird = Reading("d", "p", 1 << 70, 1.0)
    assert open_message(sealed("telemetry", [reading_entry(weird)]), TRUST).readings[0].value == (
        str(1 << 70)
    )
    with pytest.raises(ValueError, match="gateway id"):
        seal(
            GW,
            gateway="gw/1",
            site="s",
            kind="telemetry",
            seq=1,
            ts=1.0,
            historical=False,
            entries=[],
        )
    with pytest.raises(ValueError, match="kind 'state'"):
        seal(
            GW, gateway="gw-1", site="s", kind="state", seq=1, ts=1.0, historical=False, entries=[]
        )
    with pytest.raises(ValueError, match="seq"):
        seal(
            GW, gateway="gw-1", site="s", kind="event", seq=-1, ts=1.0, historical=False, entries=[]
        )


# --- strict opening -------------------------------------------------------------------------


def good_body() -> dict[str, Any]:
    return body_of(sealed("telemetry", [reading_entry(Reading("d", "p", 1.0, 2.0))]))


def deflated(raw: bytes, dictionary: bytes) -> bytes:
    deflater = zlib.compressobj(6, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, dictionary)
    return deflater.compress(raw) + deflater.flush()


def block(*groups: list[Any], points: Any = (["p"],), devices: Any = ("d",), t0: Any = 0) -> Any:
    return [t0, list(devices), list(points), list(groups)]


@pytest.mark.parametrize(
    ("change", "reason", "where"),
    [
        ({"extra": 1}, Reason.MALFORMED, "unexpected extra"),
        ({"v": 3}, Reason.UNSUPPORTED_VERSION, "body.v is 3"),
        ({"v": 1}, Reason.UNSUPPORTED_VERSION, "body.v is 1"),
        ({"kind": "command"}, Reason.MALFORMED, "body.kind"),
        ({"seq": -1}, Reason.MALFORMED, "body.seq"),
        ({"seq": 1.0}, Reason.MALFORMED, "body.seq"),
        ({"ts": "now"}, Reason.MALFORMED, "body.ts"),
        ({"ts": math.inf}, Reason.MALFORMED, "body.ts"),
        ({"hist": 0}, Reason.MALFORMED, "body.hist"),
        ({"gw": "gw/1"}, Reason.MALFORMED, "body.gw"),
        ({"site": ""}, Reason.MALFORMED, "body.site"),
        ({"data": {}}, Reason.MALFORMED, "body.data"),
        ({"data": [["d", "p", 1.0, 2.0]]}, Reason.MALFORMED, r"body.data: expected an array of 4"),
        ({"data": block(t0=1.5)}, Reason.MALFORMED, r"body.data\[0\] \(t0\)"),
        ({"data": block(devices=["d", 7])}, Reason.MALFORMED, r"\(devices\)\[1\]"),
        ({"data": block(devices=["d", "d"])}, Reason.MALFORMED, "device is listed twice"),
        ({"data": block(points=[[]])}, Reason.MALFORMED, r"\(points\)\[0\]"),
        ({"data": block(points=[["p", 5]])}, Reason.MALFORMED, r"\[0\]\.unit"),
        ({"data": block(points=[["p", None, 16]])}, Reason.MALFORMED, r"\[0\]\.scale"),
        ({"data": block(points=[["p"], ["p", None]])}, Reason.MALFORMED, "listed twice"),
        ({"data": block([0, 0, 0, 0])}, Reason.MALFORMED, r"\(groups\)|\[3\]\[0\]"),
        ({"data": block([0, 0, 0, 0, None])}, Reason.MALFORMED, r"\[3\]\[0\]\[4\] \(value\)"),
        ({"data": block([1, 0, 0, 0, 1])}, Reason.MALFORMED, r"\[3\]\[0\]\[0\] \(device\)"),
        ({"data": block([0, 0, 0, 0, 1], [-2, 0, 0, 0, 1])}, Reason.MALFORMED,
         r"\[3\]\[1\]\[0\] \(device\)"),
        ({"data": block([0, 2**53 + 1, 0, 0, 1])}, Reason.MALFORMED, r"\[3\]\[0\]\[1\] \(dt\)"),
        ({"data": block([0, 1.0, 0, 0, 1])}, Reason.MALFORMED, r"\[3\]\[0\]\[1\] \(dt\)"),
        ({"data": block([0, 0, 3, 0, 1])}, Reason.MALFORMED, r"\[3\]\[0\]\[2\] \(quality\)"),
        ({"data": block([0, 0, 0, 1, 1])}, Reason.MALFORMED, r"\[3\]\[0\]\[3\] \(point\)"),
        ({"data": block([0, 0, 0, 0, 1.5], points=[["p", None, 1]])}, Reason.MALFORMED,
         "is scaled"),
        ({"data": block([0, 0, 0, 0, msgpack.ExtType(5, b"x")])}, Reason.MALFORMED, "value"),
        ({"data": b"not deflate"}, Reason.MALFORMED, "not a zlib stream"),
        ({"data": deflated(msgpack.packb(block()), b"another dictionary")}, Reason.MALFORMED,
         "dictionary not the protocol's"),
        ({"data": deflated(msgpack.packb(block()), DICTIONARY)[:-1]}, Reason.MALFORMED,
         "truncated"),
        ({"data": zlib.compress(msgpack.packb(block()))[:-3]}, Reason.MALFORMED, "truncated"),
        ({"data": zlib.compress(msgpack.packb(block())) + b"x"}, Reason.MALFORMED,
         "after the zlib"),
        ({"data": zlib.compress(bytes(2 << 20))}, Reason.MALFORMED, "inflates beyond"),
        ({"data": zlib.compress(msgpack.packb(block()) + b"x")}, Reason.MALFORMED, "MessagePack"),
    ],
)  # fmt: skip
def test_a_validly_signed_but_malformed_body_is_refused_naming_the_field(
    change: dict[str, Any], reason: Reason, where: str
) -> None:
    body = good_body() | change
    with pytest.raises(EnvelopeError, match=where) as err:
        open_message(resign(body), TRUST)
    assert err.value.code == reason


def test_missing_body_field_is_named() -> None:
    body = good_body()
    del body["hist"]
    with pytest.raises(EnvelopeError, match="missing hist"):
        open_message(resign(body), TRUST)


def test_integer_timestamps_are_accepted() -> None:
    body = good_body() | {"ts": 1700000000, "data": block([0, 250, 1, 0, 1], t0=1700000000000)}
    message = open_message(resign(body), TRUST)
    assert message.ts == 1700000000.0 and isinstance(message.ts, float)
    assert message.readings == [
        Reading("d", "p", 1, 1700000000.25, None, Quality.CLOCK_UNSYNCED)
    ]  # fmt: skip


def test_envelope_checks_and_their_reasons() -> None:
    payload = sealed("telemetry", [])
    outer = msgpack.unpackb(payload)
    cases: list[tuple[Any, Reason, str]] = [
        (b"", Reason.MALFORMED, "not valid MessagePack"),
        (msgpack.packb([1, 2]), Reason.MALFORMED, "a map"),
        (msgpack.packb({**outer, "v": "1"}), Reason.MALFORMED, "integer version"),
        (msgpack.packb({**outer, "v": 3}), Reason.UNSUPPORTED_VERSION, "is 3"),
        (msgpack.packb({**outer, "x": 1}), Reason.MALFORMED, "unexpected x"),
        (msgpack.packb({**outer, "kid": outer["kid"].upper()}), Reason.MALFORMED, "kid"),
        (msgpack.packb({**outer, "body": "text"}), Reason.MALFORMED, "envelope.body"),
        (msgpack.packb({**outer, "sig": outer["sig"][:63]}), Reason.MALFORMED, "envelope.sig"),
        (msgpack.packb({**outer, "kid": CP.key_id}), Reason.UNKNOWN_KEY, CP.key_id),
        (payload + b"\xc0", Reason.MALFORMED, "not valid MessagePack"),
        ("text", Reason.MALFORMED, "expected bytes"),
    ]
    for bad, reason, detail in cases:
        with pytest.raises(EnvelopeError, match=detail) as err:
            open_message(bad, TRUST)
        assert err.value.code == reason, (bad, err.value)
    with pytest.raises(EnvelopeError) as err:
        open_message(payload, TRUST, max_size=len(payload) - 1)
    assert err.value.code == Reason.TOO_LARGE
    assert str(err.value).startswith("too-large: ")


def test_contexts_keep_messages_and_commands_apart() -> None:
    both = {GW.key_id: GW.public_key, CP.key_id: CP.public_key}
    cmd = Command("c-1", "gw-1", None, "ping", {}, 1.0, 2.0, "")
    with pytest.raises(EnvelopeError) as err:
        open_message(seal_command(GW, cmd), both)
    assert err.value.code == Reason.BAD_SIGNATURE
    with pytest.raises(EnvelopeError) as err:
        open_command(sealed("telemetry", []), both)
    assert err.value.code == Reason.BAD_SIGNATURE
    # and a body that would pass as either kind still needs the right context
    body = msgpack.packb(
        {
            "v": 2,
            "kind": "command",
            "id": "c",
            "target": "gw-1",
            "device": None,
            "op": "ping",
            "args": {},
            "issued": 1.0,
            "expires": 2.0,
        }
    )
    assert open_command(resign(body, CP, COMMAND_CONTEXT), both).id == "c"
    with pytest.raises(EnvelopeError, match="bad-signature"):
        open_command(resign(body, CP, MESSAGE_CONTEXT), both)


def command_body(**change: Any) -> dict[str, Any]:
    return {
        "v": 2,
        "kind": "command",
        "id": "c",
        "target": "gw-1",
        "device": "lamppost-03",
        "op": "write",
        "args": {},
        "issued": 1.0,
        "expires": 2.0,
    } | change


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"id": ""}, "body.id: must not be empty"),
        ({"id": "x" * 129}, "body.id: longer than 128"),
        ({"op": 3}, "body.op"),
        ({"target": "a b"}, "body.target"),
        ({"device": 4}, "body.device"),
        ({"args": [1]}, "body.args"),
        ({"args": {"v": msgpack.ExtType(1, b"")}}, "body.args.v"),
        ({"expires": 0.5}, "before body.issued"),
        ({"kind": "telemetry"}, "body.kind"),
    ],
)
def test_malformed_commands(change: dict[str, Any], where: str) -> None:
    with pytest.raises(EnvelopeError, match=where) as err:
        open_command(resign(command_body(**change), CP, COMMAND_CONTEXT), CP_TRUST)
    assert err.value.code == Reason.MALFORMED
    assert err.value.result_code is ResultCode.MALFORMED


def test_result_codes_for_refused_commands() -> None:
    payload = seal_command(CP, Command("c", "gw-1", None, "ping", {}, 1.0, 2.0, ""))
    with pytest.raises(EnvelopeError) as err:
        open_command(payload, TRUST)
    assert err.value.result_code is ResultCode.UNKNOWN_KEY
    tampered = bytearray(payload)
    tampered[-1] ^= 0x80
    with pytest.raises(EnvelopeError) as err:
        open_command(bytes(tampered), CP_TRUST)
    assert err.value.result_code is ResultCode.BAD_SIGNATURE
    with pytest.raises(ValueError, match="command id"):
        seal_command(CP, Command("", "gw-1", None, "ping", {}, 1.0, 2.0, ""))


@pytest.mark.parametrize("depth", [33, 500, 1000, 1020])
def test_deep_nesting_is_refused_not_a_recursion_error(depth: int) -> None:
    data: Any = 1
    for _ in range(depth):
        data = [data]
    body = good_body() | {"kind": "event", "data": [["k", "s", 1.0, "info", None, {"x": data}]]}
    raw = msgpack.packb(body)
    with pytest.raises(EnvelopeError, match=r"nested deeper than 32|not valid MessagePack"):
        open_message(resign(raw), TRUST)


def test_deep_or_cyclic_event_data_is_flattened_by_the_encoder() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    event = Event("k", "s", 1.0, data={"deep": deep, "cyclic": cyclic})
    (decoded,) = open_message(sealed("event", [event_entry(event)]), TRUST).events
    assert "nested deeper than 32 levels" in repr(decoded.data["deep"])
    assert "nested deeper than 32 levels" in repr(decoded.data["cyclic"])


def test_deep_values_in_fixed_fields_are_described_without_recursing() -> None:
    deep: Any = 1
    for _ in range(1000):
        deep = [deep]
    for field in ("seq", "gw", "data"):
        with pytest.raises(EnvelopeError, match=f"body.{field}.*list of 1"):
            open_message(resign(good_body() | {field: deep}), TRUST)
    outer = msgpack.unpackb(sealed("telemetry", []))
    with pytest.raises(EnvelopeError, match=r"envelope\.kid.*list of 1"):
        open_message(msgpack.packb({**outer, "kid": deep}), TRUST)
