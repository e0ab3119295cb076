"""The readings block decoder against hostile input: random bytes, random values and
mutations of a realistic message (plain and deflated), all validly signed, so that
only the decoder stands in the way. The answer is a list of readings or an
EnvelopeError naming a place in body.data, never another exception."""

from __future__ import annotations

import copy
import json
import math
import zlib
from decimal import Decimal
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cityedge.protocol.decoding import EnvelopeError, Reason
from cityedge.protocol.entries import Message
from cityedge.protocol.opening import open_message
from cityedge.protocol.readings import decimal, decode_block
from cityedge.protocol.sealing import MESSAGE_CONTEXT
from cityedge.sdk.model import Reading
from tests.protocol import readings_vectors, vectors
from tests.protocol.test_fuzz import plain_values

GW = vectors.gateway_key()
TRUST = {GW.key_id: GW.public_key}
POLL = json.loads((readings_vectors.READINGS_DIR / "street-poll.json").read_text())
BODY = msgpack.unpackb(bytes.fromhex(POLL["body_hex"]))
BLOCK = BODY["data"]
BLOCK_BYTES = msgpack.packb(BLOCK)


def signed_with_data(data: Any) -> bytes:
    body = msgpack.packb(BODY | {"data": data})
    envelope = {"v": 2, "kid": GW.key_id, "body": body, "sig": GW.sign(MESSAGE_CONTEXT + body)}
    return bytes(msgpack.packb(envelope))


def opened_or_refused(payload: bytes) -> None:
    try:
        message = open_message(payload, TRUST)
    except EnvelopeError as err:
        assert err.code in (Reason.MALFORMED, Reason.UNSUPPORTED_VERSION), err
        assert err.detail.startswith("body"), err.detail
        return
    assert isinstance(message, Message)
    assert all(isinstance(r, Reading) for r in message.readings)


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_as_a_deflated_block(raw: bytes) -> None:
    opened_or_refused(signed_with_data(raw))


@settings(max_examples=1500, deadline=None)
@given(plain_values)
def test_any_value_as_a_block(value: Any) -> None:
    try:
        readings = decode_block(value)
    except EnvelopeError as err:
        assert err.code == Reason.MALFORMED and err.detail.startswith("body.data")
        return
    assert all(isinstance(r, Reading) for r in readings)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_realistic_block_with_anything_changed(data: st.DataObject) -> None:
    """Down a random path of the block's arrays, one item replaced, removed or added."""
    block = copy.deepcopy(BLOCK)
    node = block
    while True:
        j = data.draw(st.integers(0, len(node)))
        if j < len(node) and isinstance(node[j], list) and data.draw(st.booleans()):
            node = node[j]
            continue
        action = data.draw(st.sampled_from(["replace", "remove", "insert"]))
        if action == "remove":
            del node[j : j + 1]
        else:
            node[j : j + (action == "replace")] = [data.draw(plain_values)]
        break
    opened_or_refused(signed_with_data(block))
    opened_or_refused(signed_with_data(zlib.compress(msgpack.packb(block))))


@settings(max_examples=1500, deadline=None)
@given(st.data())
def test_flipped_bytes_inside_a_block_and_its_deflated_form(data: st.DataObject) -> None:
    for raw in (BLOCK_BYTES, zlib.compress(BLOCK_BYTES)):
        position = data.draw(st.integers(0, len(raw) - 1))
        mutated = bytearray(raw)
        mutated[position] ^= data.draw(st.integers(1, 255))
        if raw is BLOCK_BYTES:  # as the block's own bytes inside the body
            head = msgpack.packb(BODY | {"data": None})[:-1]  # "data" is the last key
            body = head + bytes(mutated)
            envelope = {"v": 2, "kid": GW.key_id, "body": body,
                        "sig": GW.sign(MESSAGE_CONTEXT + body)}  # fmt: skip
            opened_or_refused(bytes(msgpack.packb(envelope)))
        else:
            opened_or_refused(signed_with_data(bytes(mutated)))


def test_truncated_deflate_streams_are_refused_at_every_length() -> None:
    deflated = zlib.compress(BLOCK_BYTES)
    for cut in range(len(deflated)):
        try:
            open_message(signed_with_data(deflated[:cut]), TRUST)
        except EnvelopeError as err:
            assert err.code == Reason.MALFORMED and "body.data" in err.detail
        else:
            raise AssertionError(f"a deflate stream cut at {cut} was accepted")


@settings(max_examples=3000, deadline=None)
@given(st.floats() | st.floats(-1e6, 1e6).map(lambda v: round(v, 3)))
def test_scaled_floats_come_back_exactly(value: float) -> None:
    """decimal() is the doc's rule (the shortest decimal, at most 6 places, |m| <= 2^53),
    and what it gives always divides back to the very same float."""
    pair = decimal(value)
    if pair is None:
        if math.isfinite(value) and not (value == 0 and math.copysign(1.0, value) < 0):
            shortest = Decimal(repr(value)).normalize()
            k = max(0, -int(shortest.as_tuple().exponent))
            assert k > 6 or abs(int(shortest.scaleb(k))) > 2**53
        return
    k, m = pair
    assert 0 <= k <= 6 and abs(m) <= 2**53
    assert m / 10**k == value
    assert math.copysign(1.0, m / 10**k) == math.copysign(1.0, value)
    if k:
        assert m % 10 != 0  # the shortest: no trailing zero
