"""Whatever arrives, the answer is an EnvelopeError with a reason, or a valid message:
never another exception. One flipped byte anywhere is always refused."""

from __future__ import annotations

import copy
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cityedge.protocol.commands import open_command
from cityedge.protocol.decoding import EnvelopeError, Reason
from cityedge.protocol.entries import Message
from cityedge.protocol.key_files import load_trust
from cityedge.protocol.opening import open_message
from cityedge.protocol.sealing import COMMAND_CONTEXT, MESSAGE_CONTEXT
from tests.protocol import vectors

BUILT = vectors.build()
TRUST = load_trust([BUILT["telemetry"]["signer"]["public_key"]])
CP_TRUST = load_trust([BUILT["command"]["signer"]["public_key"]])
MESSAGES = [
    bytes.fromhex(BUILT[k]["payload_hex"]) for k in ("telemetry", "event", "state", "result")
]
COMMAND = bytes.fromhex(BUILT["command"]["payload_hex"])
REASONS = {str(r) for r in Reason}
GW = vectors.gateway_key()
CP = vectors.command_post_key()


def refused(payload: bytes, *, command: bool = False) -> EnvelopeError:
    try:
        if command:
            open_command(payload, CP_TRUST)
        else:
            open_message(payload, TRUST)
    except EnvelopeError as err:
        assert err.code in REASONS
        assert err.detail
        return err
    raise AssertionError(f"accepted {payload.hex()}")


def opened_or_refused(payload: bytes, *, command: bool = False) -> None:
    try:
        if command:
            open_command(payload, CP_TRUST)
        else:
            assert isinstance(open_message(payload, TRUST), Message)
    except EnvelopeError as err:
        assert err.code in REASONS


@settings(max_examples=1500, deadline=None)
@given(st.data())
def test_one_flipped_byte_anywhere_is_refused(data: st.DataObject) -> None:
    payload = data.draw(st.sampled_from([*MESSAGES, COMMAND]))
    position = data.draw(st.integers(0, len(payload) - 1))
    mask = data.draw(st.integers(1, 255))
    flipped = bytearray(payload)
    flipped[position] ^= mask
    refused(bytes(flipped), command=payload is COMMAND)


def test_every_truncation_is_refused_as_malformed() -> None:
    for payload in [*MESSAGES, COMMAND]:
        for cut in range(len(payload)):
            err = refused(payload[:cut], command=payload is COMMAND)
            assert err.code == Reason.MALFORMED


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_bytes_are_refused(garbage: bytes) -> None:
    refused(garbage)
    refused(garbage, command=True)


plain_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=1000, deadline=None)
@given(plain_values)
def test_any_msgpack_value_as_a_payload_is_refused(value: Any) -> None:
    payload = msgpack.packb(value)
    refused(payload)
    refused(payload, command=True)


BODY = msgpack.unpackb(bytes.fromhex(BUILT["telemetry"]["body_hex"]))
COMMAND_BODY = msgpack.unpackb(bytes.fromhex(BUILT["command"]["body_hex"]))


def signed(body: bytes, *, command: bool = False) -> bytes:
    key, context = (CP, COMMAND_CONTEXT) if command else (GW, MESSAGE_CONTEXT)
    return bytes(
        msgpack.packb({"v": 2, "kid": key.key_id, "body": body, "sig": key.sign(context + body)})
    )


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_validly_signed_bodies_with_any_field_changed_open_or_are_refused(
    data: st.DataObject,
) -> None:
    """The signature is fine, so only the strict decoder stands between these and the
    command post: every field (and entry field) replaced by any value."""
    command = data.draw(st.booleans())
    body = dict(COMMAND_BODY if command else BODY)
    field = data.draw(st.sampled_from(sorted(body)))
    if field == "data" and data.draw(st.booleans()):
        # down a random path of arrays (a block's tables and groups), then one item
        # there replaced or removed
        body["data"] = copy.deepcopy(body["data"])
        node = body["data"]
        while True:
            j = data.draw(st.integers(0, len(node)))
            if j < len(node) and isinstance(node[j], list) and data.draw(st.booleans()):
                node = node[j]
                continue
            node[j : j + 1] = [data.draw(plain_values)] if data.draw(st.booleans()) else []
            break
    elif data.draw(st.booleans()):
        body[field] = data.draw(plain_values)
    else:
        del body[field]
    opened_or_refused(signed(msgpack.packb(body), command=command), command=command)


@settings(max_examples=800, deadline=None)
@given(st.binary(max_size=200), st.booleans())
def test_validly_signed_garbage_bodies_are_refused(body: bytes, command: bool) -> None:
    opened_or_refused(signed(body, command=command), command=command)
