"""Opening: verify the signature over the bytes received, and only then decode them.

`open_envelope` is that step for every kind of signed thing (size, envelope
structure, version, key, signature, in the order of docs/protocol.md §3);
`open_message` then reads a gateway message's body strictly. Nothing is
re-encoded on the way: the signature covers exactly the bytes decoded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cityedge.protocol.decoding import (
    MAX_MESSAGE_BYTES,
    MAX_SEQ,
    EnvelopeError,
    Reason,
    expect_map,
    expect_version,
    malformed,
    read_name,
    read_plain_map,
    read_time,
    show,
    unpack,
)
from cityedge.protocol.entries import MESSAGE_KINDS, OBJECT_KINDS, Entry, Message, decode_entries
from cityedge.protocol.keys import KEY_ID_PATTERN, SIGNATURE_BYTES, PublicKey
from cityedge.protocol.sealing import MESSAGE_CONTEXT

_ENVELOPE_KEYS = frozenset({"v", "kid", "body", "sig"})
_BODY_KEYS = frozenset({"v", "gw", "site", "kind", "seq", "ts", "hist", "data"})


def open_envelope(
    payload: bytes, trusted: Mapping[str, PublicKey], max_size: int, context: bytes
) -> tuple[str, bytes]:
    """(key id, body bytes) of an envelope whose signature under `context` verifies
    with one of the `trusted` keys; raises `EnvelopeError` (with the body bytes
    once they were read: a refused command is answered with its id if it has one).

    The size is checked before anything is decoded: an oversized payload costs
    nothing beyond the bytes already received."""
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise malformed(f"payload: expected bytes, got {type(payload).__name__}")
    if len(payload) > max_size:
        raise EnvelopeError(Reason.TOO_LARGE, f"payload is {len(payload)} bytes, limit {max_size}")
    outer = unpack(bytes(payload), "envelope")
    if not isinstance(outer, dict) or "v" not in outer:
        raise malformed(f"envelope: expected a map with a 'v' field, got {show(outer)}")
    expect_version(outer["v"], "envelope.v")
    expect_map(outer, _ENVELOPE_KEYS, "envelope")
    kid, body, sig = outer["kid"], outer["body"], outer["sig"]
    if not isinstance(kid, str) or KEY_ID_PATTERN.match(kid) is None:
        raise malformed(f"envelope.kid: expected 16 lowercase hex digits, got {show(kid)}")
    if not isinstance(body, bytes):
        raise malformed(f"envelope.body: expected bin, got {show(body)}")
    if not isinstance(sig, bytes) or len(sig) != SIGNATURE_BYTES:
        raise malformed(f"envelope.sig: expected 64 bytes of bin, got {show(sig)}")
    public = trusted.get(kid)
    if public is None:
        raise EnvelopeError(Reason.UNKNOWN_KEY, f"key {kid} is not trusted here", kid, body=body)
    if not public.verify(sig, context + body):
        raise EnvelopeError(
            Reason.BAD_SIGNATURE,
            f"signature does not verify with key {kid} ({len(body)}-byte body)",
            kid,
            body=body,
        )
    return kid, body


def open_message(
    payload: bytes, trusted: Mapping[str, PublicKey], *, max_size: int = MAX_MESSAGE_BYTES
) -> Message:
    """Verify and decode a gateway message; raises `EnvelopeError`.

    Checks run in the order of docs/protocol.md: size, envelope structure,
    version, key, signature, then the body, strictly (a malformed entry is an
    error naming its index).
    """
    kid, body = open_envelope(payload, trusted, max_size, MESSAGE_CONTEXT)
    fields = unpack(body, "body")
    expect_map(fields, _BODY_KEYS, "body")
    expect_version(fields["v"], "body.v")
    kind = fields["kind"]
    if kind not in MESSAGE_KINDS:
        raise malformed(f"body.kind: expected one of {', '.join(MESSAGE_KINDS)}, got {kind!r}")
    seq = fields["seq"]
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise malformed(f"body.seq: expected an integer 0..2^63-1, got {show(seq)}")
    if type(fields["hist"]) is not bool:
        raise malformed(f"body.hist: expected a boolean, got {show(fields['hist'])}")
    data: list[Entry] | dict[str, Any]
    if kind in OBJECT_KINDS:
        data = read_plain_map(fields["data"], "body.data")
        if kind == "state" and not isinstance(data.get("status"), str):
            raise malformed("body.data.status: a state message needs a status text")
    else:
        data = decode_entries(kind, fields["data"])
    return Message(
        key_id=kid,
        gateway=read_name(fields["gw"], "body.gw"),
        site=read_name(fields["site"], "body.site"),
        kind=kind,
        seq=seq,
        ts=read_time(fields["ts"], "body.ts"),
        historical=fields["hist"],
        data=data,
        raw_body=body,
    )
