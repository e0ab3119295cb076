"""The sealing path's shortcuts change no byte: the float wire-form cache (zeros and
NaN never cached), the fields a reading entry keeps for the sealer (the outbox's
Joined bytes) against decoding the stored bytes, and a whole pipeline-made outbox
against the same entries sealed from bytes alone."""

from __future__ import annotations

import math
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.gateway.outbox.messages import Entry, Joined, chunk
from cityedge.protocol.entries import packed_reading, reading_entry
from cityedge.protocol.readings import array_header, decode_block, encode_block
from cityedge.protocol.sealing import message_sealer
from cityedge.sdk.model import Quality, Reading
from tests.protocol import vectors

GW = vectors.gateway_key()
SEAL = message_sealer(GW, gateway="gw-1", site="test")

texts = st.text(max_size=8)  # lone surrogates included: those entries keep no fields
values = (
    st.booleans()
    | st.integers(-(1 << 70), 1 << 70)  # beyond 64 bits: coerced to text, no fields
    | st.floats()
    | st.floats(-1e4, 1e4).map(lambda v: round(v, 2))
    | texts
)
readings = st.builds(
    Reading,
    device=texts,
    point=texts,
    value=values,
    ts=st.floats(1.7e9, 1.7e9 + 50),  # one message: chunk() cuts at a minute
    unit=st.none() | texts,
    quality=st.sampled_from(list(Quality)),
)


def decoded(joined: bytes, count: int) -> tuple[Any, ...]:
    return tuple(msgpack.unpackb(array_header(count) + joined, raw=False, use_list=False))


@settings(max_examples=300, deadline=None)
@given(st.lists(readings, min_size=1, max_size=12))
def test_kept_fields_are_what_the_bytes_decode_to(batch: list[Reading]) -> None:
    entries = [Entry("telemetry", 1, r.ts, *packed_reading(r)) for r in batch]
    for r, e in zip(batch, entries, strict=True):
        assert e.body == reading_entry(r)
        if e.decoded is not None:
            assert msgpack.packb(e.decoded) == e.body  # NaN != NaN: compare bytes
            assert [type(v) for v in e.decoded] == [type(v) for v in decoded(e.body, 1)[0]]
    ((*_, count, joined),) = chunk(entries, 500, 1 << 20)
    plain = bytes(joined)
    assert (type(joined) is Joined) == all(e.decoded is not None for e in entries)
    assert encode_block(decoded(plain, count)) == encode_block(
        getattr(joined, "decoded", None) or decoded(plain, count)
    )
    args = {"kind": "telemetry", "seq": 7, "historical": False, "count": count}
    with_fields, from_bytes = SEAL(entries=joined, **args), SEAL(entries=plain, **args)
    # the envelope's ts is the sealing time: compare the blocks (as bytes: NaN != NaN)
    assert _block(with_fields) == _block(from_bytes)


def _block(payload: bytes) -> bytes:
    return bytes(msgpack.packb(msgpack.unpackb(msgpack.unpackb(payload)["body"])["data"]))


def test_zeros_and_nan_are_never_taken_for_each_other() -> None:
    """0.0 == -0.0 as dict keys: the cache must not hand one the other's wire form."""
    rows = [("d", "p", v, 1.7e9) for v in (0.0, -0.0, 0.0, -0.0, math.nan, 1.5, -1.5, 1.5)]
    for order in (rows, rows[::-1]):
        back = decode_block(msgpack.unpackb(encode_block(order)))
        for (_, _, sent, _), got in zip(order, back, strict=True):
            if math.isnan(sent):
                assert math.isnan(float(got.value))
            else:
                assert got.value == sent
                assert math.copysign(1.0, float(got.value)) == math.copysign(1.0, sent)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=False) | st.floats(-1e3, 1e3).map(lambda v: round(v, 1)),
                min_size=1, max_size=20))  # fmt: skip
def test_a_cached_wire_form_is_the_one_worked_out(floats: list[float]) -> None:
    """Encoding the same values again (now from the cache) gives the same bytes."""
    rows = [("d", f"p{i % 3}", v, 1.7e9) for i, v in enumerate(floats)]
    first = encode_block(rows)
    assert encode_block(rows) == first
    back = decode_block(msgpack.unpackb(first))
    assert [r.value for r in back] == floats
