"""Gateway key announcements: a gateway's new key, vouched for by its previous key.

A gateway that rotates its key signs an announcement of the new one with the
old, and carries the chain of them in its retained state message until the
command post has seen it (docs/protocol.md §12).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cityedge.protocol.decoding import (
    ENVELOPE_VERSION,
    MAX_MESSAGE_BYTES,
    EnvelopeError,
    check_name,
    expect_map,
    expect_version,
    malformed,
    read_name,
    read_time,
    show,
    unpack,
)
from cityedge.protocol.entries import finite, pack_total
from cityedge.protocol.keys import PUBLIC_KEY_BYTES, PublicKey, SigningKey
from cityedge.protocol.opening import open_envelope
from cityedge.protocol.sealing import ANNOUNCEMENT_CONTEXT, wrap

ANNOUNCEMENT_KIND: Final = "key-announcement"
MAX_ANNOUNCEMENT_BYTES: Final = 1024
MAX_ANNOUNCEMENTS: Final = 8  # a chain of rotations carried in one state message

_ANNOUNCEMENT_KEYS = frozenset({"v", "kind", "gw", "new_kid", "new_key", "ts"})


@dataclass(frozen=True, slots=True)
class KeyAnnouncement:
    """A gateway's new key, vouched for by its previous key (`key_id`)."""

    key_id: str  # the old key, which signed this
    gateway: str
    new_key_id: str
    new_key: PublicKey
    ts: float


def seal_key_announcement(old: SigningKey, new_key: PublicKey, *, gateway: str, ts: float) -> bytes:
    """The announcement of `new_key`, signed by the gateway's current key `old`."""
    check_name(gateway, "gateway id")
    body = {
        "v": ENVELOPE_VERSION,
        "kind": ANNOUNCEMENT_KIND,
        "gw": gateway,
        "new_kid": new_key.key_id,
        "new_key": new_key.raw,
        "ts": finite(ts, "announcement ts"),
    }
    return wrap(old, pack_total(body), ANNOUNCEMENT_CONTEXT)


def open_key_announcement(payload: bytes, trusted: Mapping[str, PublicKey]) -> KeyAnnouncement:
    """Verify an announcement with the keys trusted for gateways; raises `EnvelopeError`.
    Whether the signer belongs to the announced gateway is the verifier's check."""
    kid, body = open_envelope(payload, trusted, MAX_ANNOUNCEMENT_BYTES, ANNOUNCEMENT_CONTEXT)
    fields = unpack(body, "announcement")
    expect_map(fields, _ANNOUNCEMENT_KEYS, "announcement")
    expect_version(fields["v"], "announcement.v")
    if fields["kind"] != ANNOUNCEMENT_KIND:
        raise malformed(f"announcement.kind: expected {ANNOUNCEMENT_KIND!r}")
    raw = fields["new_key"]
    if not isinstance(raw, bytes) or len(raw) != PUBLIC_KEY_BYTES:
        raise malformed(f"announcement.new_key: expected 32 bytes of bin, got {show(raw)}")
    try:
        new_key = PublicKey(raw)
    except ValueError as err:
        raise malformed(f"announcement.new_key: {err}") from None
    new_kid = new_key.key_id
    if fields["new_kid"] != new_kid:
        raise malformed(f"announcement.new_kid: {show(fields['new_kid'])} is not {new_kid}")
    if new_kid == kid:
        raise malformed("announcement: the new key is the signing key")
    return KeyAnnouncement(
        kid, read_name(fields["gw"], "announcement.gw"), new_kid, new_key,
        read_time(fields["ts"], "announcement.ts"),
    )  # fmt: skip


def unverified_announcements(payload: bytes) -> list[bytes]:
    """The `key_announcements` a state message carries, read WITHOUT checking its
    signature: only to find announcements, each verified on its own, and then the
    message itself is verified with the key they vouch for."""
    try:
        outer = unpack(bytes(payload[:MAX_MESSAGE_BYTES]), "envelope")
        body = unpack(outer["body"], "body") if isinstance(outer, dict) else None
        data = body.get("data") if isinstance(body, dict) else None
        chain = data.get("key_announcements") if isinstance(data, dict) else None
    except (EnvelopeError, KeyError, TypeError):
        return []
    if not isinstance(chain, list):
        return []
    return [item for item in chain[:MAX_ANNOUNCEMENTS] if isinstance(item, bytes)]
