"""Signed commands: what the command post sends a gateway (docs/protocol.md §8).

The body is a map of nine fields; `seal_command` signs it with a command-post
key, `open_command` verifies and decodes it. Expiry, target and replay are the
gateway's checks, not this module's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Final

from cityedge.protocol.decoding import (
    ENVELOPE_VERSION,
    MAX_COMMAND_ID,
    EnvelopeError,
    expect_map,
    expect_version,
    malformed,
    read_name,
    read_plain_map,
    read_text,
    read_time,
    show,
    unpack,
)
from cityedge.protocol.entries import DIGEST_BYTES, carryable, finite, pack_total
from cityedge.protocol.keys import PublicKey, SigningKey
from cityedge.protocol.opening import open_envelope
from cityedge.protocol.sealing import COMMAND_CONTEXT, wrap
from cityedge.protocol.topics import NAME_PATTERN
from cityedge.sdk.model import Command

COMMAND_KIND: Final = "command"
MAX_COMMAND_BYTES: Final = 64 * 1024

_COMMAND_KEYS = frozenset(
    {"v", "kind", "id", "target", "device", "op", "args", "issued", "expires"}
)


def seal_command(key: SigningKey, cmd: Command) -> bytes:
    """A command signed by a command-post key. `cmd.key_id` is not sent: the
    envelope's `kid` names the signer (and `open_command` fills it in)."""
    for name, value in (("id", cmd.id), ("op", cmd.op)):
        if not isinstance(value, str) or not 0 < len(value) <= MAX_COMMAND_ID:
            raise ValueError(f"command {name} {value!r}: expected 1-{MAX_COMMAND_ID} characters")
    if NAME_PATTERN.match(cmd.target) is None:
        raise ValueError(f"command target {cmd.target!r}: expected a gateway id")
    body = {
        "v": ENVELOPE_VERSION,
        "kind": COMMAND_KIND,
        "id": cmd.id,
        "target": cmd.target,
        "device": cmd.device,
        "op": cmd.op,
        "args": carryable(cmd.args, 0),
        "issued": finite(cmd.issued, "command issued"),
        "expires": finite(cmd.expires, "command expires"),
    }
    return wrap(key, pack_total(body), COMMAND_CONTEXT)


def open_command(
    payload: bytes, trusted: Mapping[str, PublicKey], *, max_size: int = MAX_COMMAND_BYTES
) -> Command:
    """Verify and decode a command: checks 1-7 of docs/protocol.md §4.1 (size,
    envelope, version, key, signature, body); raises `EnvelopeError`, carrying the
    command's id only once the signature verified. Whether the operation exists,
    target, validity and replay are the gateway's checks (gateway.commands).

    Every byte is decoded at most once: the size is checked before anything, the
    envelope and the body are each unpacked once, refused or not."""
    # An unverified command's id is never read: its answer names it by digest only,
    # so a forged copy cannot make the gateway sign anything under a real command's id.
    kid, body = open_envelope(payload, trusted, max_size, COMMAND_CONTEXT)
    fields = unpack(body, "body")
    try:
        return _read_command(fields, kid)
    except EnvelopeError as err:
        err.command_id = _peek_id(fields)  # signed by a trusted key: its id is genuine
        err.key_id = kid
        raise


def command_digest(payload: bytes) -> bytes:
    """What a result names its command by: the first 16 bytes of SHA-256 over the
    command payload exactly as received (docs/protocol.md §8.3)."""
    return hashlib.sha256(payload).digest()[:DIGEST_BYTES]


def _peek_id(fields: object) -> str:
    """The id of a body that may be invalid, or "": only to match an answer to it."""
    cid = fields.get("id") if isinstance(fields, dict) else None
    return cid if isinstance(cid, str) and 0 < len(cid) <= MAX_COMMAND_ID else ""


def _read_command(fields: object, kid: str) -> Command:
    expect_map(fields, _COMMAND_KEYS, "body")
    assert isinstance(fields, dict)
    expect_version(fields["v"], "body.v")
    if fields["kind"] != COMMAND_KIND:
        raise malformed(f"body.kind: expected 'command', got {show(fields['kind'])}")
    device = fields["device"]
    if device is not None:
        device = read_text(device, "body.device")
    issued = read_time(fields["issued"], "body.issued")
    expires = read_time(fields["expires"], "body.expires")
    if expires < issued:
        raise malformed(f"body.expires ({expires}) is before body.issued ({issued})")
    return Command(
        id=read_text(fields["id"], "body.id", limit=MAX_COMMAND_ID, empty=False),
        target=read_name(fields["target"], "body.target"),
        device=device,
        op=read_text(fields["op"], "body.op", limit=MAX_COMMAND_ID, empty=False),
        args=read_plain_map(fields["args"], "body.args"),
        issued=issued,
        expires=expires,
        key_id=kid,
    )
