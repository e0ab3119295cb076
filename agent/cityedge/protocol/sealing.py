"""Sealing: signed MessagePack envelopes, as a gateway sends them (docs/protocol.md §3).

Outer form, a MessagePack map with four keys in this order:

    {"v": 2, "kid": <16 hex digits>, "body": <bin: MessagePack body>, "sig": <bin 64>}

`sig` is Ed25519 over `CONTEXT || body`, where `body` is exactly the bytes of
the bin field and CONTEXT says what kind of thing was signed (a gateway
message, a command or a key announcement), so a signature can never be
replayed as another. `wrap` is that step for every kind; the rest of this
module builds gateway-message bodies.

Entries were encoded once, when they entered the outbox. Events and results
travel as they were stored: `seal` writes MessagePack headers and concatenates
the stored entry bytes. Readings are regrouped into one compact readings block
per message (protocol/readings.py): a table of devices and points, one row per
poll, compressed when that pays; the readings' fields come with the bytes when
the pipeline kept them (`entries.packed_reading`), else the bytes are decoded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, cast

import msgpack

from cityedge.protocol.decoding import ENVELOPE_VERSION, MAX_SEQ, check_name
from cityedge.protocol.entries import ENTRY_KINDS, OBJECT_KINDS, carryable, pack_total
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.readings import array_header, encode_block, pack_data

# One context per kind of signed thing, side by side so that no two can coincide.
MESSAGE_CONTEXT: Final = b"cityedge/v2/gateway-message\x00"
COMMAND_CONTEXT: Final = b"cityedge/v2/command\x00"
ANNOUNCEMENT_CONTEXT: Final = b"cityedge/v2/key-announcement\x00"

_K = {
    name: msgpack.packb(name) for name in ("v", "gw", "site", "kind", "seq", "ts", "hist", "data")
}
_BODY_START = b"\x88" + _K["v"] + msgpack.packb(ENVELOPE_VERSION) + _K["gw"]  # map of 8


def wrap(key: SigningKey, body: bytes, context: bytes) -> bytes:
    """The envelope around an encoded `body`, signed by `key` under `context`."""
    signature = key.sign(context + body)
    envelope = {"v": ENVELOPE_VERSION, "kid": key.key_id, "body": body, "sig": signature}
    return cast(bytes, msgpack.packb(envelope))


def _body_head(gateway: str, site: str, kind: str, seq: int, ts: float, historical: bool) -> bytes:
    check_name(gateway, "gateway id")
    check_name(site, "site")
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"seq {seq}: expected 0..2^63-1")
    return b"".join((
        _BODY_START, msgpack.packb(gateway),
        _K["site"], msgpack.packb(site),
        _K["kind"], msgpack.packb(kind),
        _K["seq"], msgpack.packb(seq),
        _K["ts"], msgpack.packb(float(ts)),
        _K["hist"], b"\xc3" if historical else b"\xc2",
        _K["data"],
    ))  # fmt: skip


def seal(
    key: SigningKey,
    *,
    gateway: str,
    site: str,
    kind: str,
    seq: int,
    ts: float,
    historical: bool,
    entries: Sequence[bytes],
    compress: bool = True,
) -> bytes:
    """One signed message carrying already-encoded entries (see `seal_joined`)."""
    return seal_joined(
        key,
        gateway=gateway,
        site=site,
        kind=kind,
        seq=seq,
        ts=ts,
        historical=historical,
        entries=b"".join(entries),
        count=len(entries),
        compress=compress,
    )


def seal_joined(
    key: SigningKey,
    *,
    gateway: str,
    site: str,
    kind: str,
    seq: int,
    ts: float,
    historical: bool,
    entries: bytes,
    count: int,
    compress: bool = True,
) -> bytes:
    """`seal` for `count` entries whose encoded bytes are already concatenated, as the
    outbox stores them. Events and results are carried as they are; readings
    (`reading_entry`) become one readings block, deflated when that makes it
    smaller (never with `compress=False`)."""
    if kind not in ENTRY_KINDS:
        raise ValueError(f"kind {kind!r}: entries travel as one of {', '.join(ENTRY_KINDS)}")
    head = _body_head(gateway, site, kind, seq, ts, historical)
    if kind == "telemetry":
        # The outbox hands over the fields it was given with the bytes (outbox.Joined):
        # no need to decode what was encoded a moment ago.
        decoded = getattr(entries, "decoded", None)
        if decoded is None or len(decoded) != count:
            decoded = _entries(entries, count)
        data = pack_data(encode_block(decoded), compress=compress)
    else:
        data = array_header(count) + entries
    return wrap(key, head + data, MESSAGE_CONTEXT)


def _entries(joined: bytes, count: int) -> tuple[Any, ...]:
    """The stored entries, decoded in one call (an array header makes them one value;
    tuples are quicker to make than lists)."""
    try:
        decoded = msgpack.unpackb(array_header(count) + joined, raw=False, use_list=False)
    except Exception as exc:  # msgpack raises a zoo; these bytes come from reading_entry
        raise ValueError(f"stored readings do not decode ({type(exc).__name__}: {exc})") from None
    for entry in decoded:
        if type(entry) is not tuple:
            raise ValueError(f"stored reading {entry!r:.60}: expected a reading_entry array")
    return cast(tuple[Any, ...], decoded)


def message_sealer(key: SigningKey, *, gateway: str, site: str) -> Callable[..., bytes]:
    """The outbox's sealer (agent.outbox.Sealer): this gateway's entry messages,
    stamped with the time they are sealed."""
    _body_head(gateway, site, "telemetry", 0, 0.0, False)  # refuse bad names now, not per message

    def seal_entries(*, kind: str, seq: int, historical: bool, entries: bytes, count: int) -> bytes:
        return seal_joined(
            key,
            gateway=gateway,
            site=site,
            kind=kind,
            seq=seq,
            ts=time.time(),
            historical=historical,
            entries=entries,
            count=count,
        )

    return seal_entries


def seal_object(
    key: SigningKey, *, gateway: str, site: str, kind: str, seq: int, ts: float, data: Any
) -> bytes:
    """One signed message whose data is a map (the retained state / birth message)."""
    if kind not in OBJECT_KINDS:
        raise ValueError(f"kind {kind!r}: a map travels as one of {', '.join(OBJECT_KINDS)}")
    if not isinstance(data, Mapping):
        raise ValueError(f"data of a {kind!r} message must be a map, got {type(data).__name__}")
    if not isinstance(data.get("status"), str):
        raise ValueError(f"data of a {kind!r} message needs a 'status' text")
    head = _body_head(gateway, site, kind, seq, ts, False)
    return wrap(key, head + pack_total(carryable(data, 0)), MESSAGE_CONTEXT)
