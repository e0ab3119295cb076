"""Test vectors for key rotation (docs/protocol.md §11-12), from fixed keys, written to
docs/test-vectors/rotation/ and checked by test_rotation_vectors.py.

Regenerate after a deliberate change:  .venv/bin/python -m tests.security.rotation_vectors --write
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgpack

from cityedge.protocol.announcements import seal_key_announcement
from cityedge.protocol.commands import seal_command
from cityedge.protocol.entries import reading_entry
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.sealing import (
    ANNOUNCEMENT_CONTEXT,
    COMMAND_CONTEXT,
    MESSAGE_CONTEXT,
    seal,
    seal_object,
)
from cityedge.protocol.topics import DEFAULT_PREFIX, topic_for
from cityedge.protocol.trust_store import TRUST_UPDATE_OP, KeyState, TrustedKey, parse_trust_update
from cityedge.sdk.model import Command, Reading

ROOT = Path(__file__).resolve().parents[2]
VECTOR_DIR = ROOT / "docs" / "test-vectors" / "rotation"
# RFC 8032 §7.1 TEST 1 (gateway) and TEST 2 (command post), as in the other vectors;
# the new keys are fixed seeds of our own.
GATEWAY_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
COMMAND_POST_SEED = bytes.fromhex(
    "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"
)
NEW_GATEWAY_SEED = bytes([0x47]) * 32
NEW_COMMAND_POST_SEED = bytes([0x43]) * 32
STRANGER_SEED = bytes(range(32))  # a key nobody trusts
BASE = topic_for(DEFAULT_PREFIX, "demo-town", "gw-17", "state").rsplit("/", 1)[0]
TS = 1700000000.25


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"bin": value.hex()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _vector(
    description: str, topic: str, seed: bytes, context: bytes, payload: bytes
) -> dict[str, Any]:
    key = SigningKey.from_seed(seed)
    outer = msgpack.unpackb(payload)
    return {
        "description": description,
        "topic": topic,
        "signer": {"seed_hex": seed.hex(), "public_key": key.public_text(), "key_id": key.key_id},
        "context_hex": context.hex(),
        "body_hex": outer["body"].hex(),
        "signature_hex": outer["sig"].hex(),
        "payload_hex": payload.hex(),
        "expected_body": _plain(msgpack.unpackb(outer["body"])),
    }


def build() -> dict[str, dict[str, Any]]:
    cp, cp_new = (
        SigningKey.from_seed(COMMAND_POST_SEED),
        SigningKey.from_seed(NEW_COMMAND_POST_SEED),
    )
    gw, gw_new = SigningKey.from_seed(GATEWAY_SEED), SigningKey.from_seed(NEW_GATEWAY_SEED)
    keys = [
        TrustedKey(cp.key_id, cp.public_key, None, TS + 7 * 86400, KeyState.ACTIVE),
        TrustedKey(cp_new.key_id, cp_new.public_key, TS, None, KeyState.ACTIVE),
    ]
    entries = [k.to_json() for k in keys]
    for item in entries:
        item["key"] = item.pop("public_key")
    args = {"version": 7, "keys": entries}
    parse_trust_update(args)
    command = Command("9b1f0c4e2d7a4c1e8f3b5a6d7e8f9012", "gw-17", None, TRUST_UPDATE_OP,
                      args, TS, TS + 600, cp.key_id)  # fmt: skip
    announcement = seal_key_announcement(gw, gw_new.public_key, gateway="gw-17", ts=TS)
    stranger = SigningKey.from_seed(STRANGER_SEED)
    forged = seal_key_announcement(stranger, stranger.public_key, gateway="gw-17", ts=TS)
    reading = reading_entry(Reading("lamppost-03", "power", 41.5, TS + 5, "W"))
    return {
        "rotated-state": _vector(
            "After the rotation: gw-17's birth, signed by the NEW key, carrying the "
            "announcement above. A command post that trusts only the old key verifies the "
            "announcement with it, then this state with the announced key, then trusts the "
            "new key for gw-17.",
            f"{BASE}/state",
            NEW_GATEWAY_SEED,
            MESSAGE_CONTEXT,
            seal_object(
                gw_new,
                gateway="gw-17",
                site="demo-town",
                kind="state",
                seq=44,
                ts=TS + 4,
                data={"status": "online", "key_announcements": [announcement]},
            ),
        ),
        "rotated-telemetry": _vector(
            "Then telemetry signed by the new key: verifies once rotated-state was accepted.",
            f"{BASE}/telemetry",
            NEW_GATEWAY_SEED,
            MESSAGE_CONTEXT,
            seal(
                gw_new,
                gateway="gw-17",
                site="demo-town",
                kind="telemetry",
                seq=45,
                ts=TS + 5,
                historical=False,
                entries=[reading],
            ),
        ),
        "forged-announcement": _vector(
            "A state for gw-17 signed by a stranger's key, carrying an announcement of that "
            "key signed by itself: refused, unknown-key, detail 'key announcement: …' (the "
            "announcement's signer is trusted by nobody).",
            f"{BASE}/state",
            STRANGER_SEED,
            MESSAGE_CONTEXT,
            seal_object(
                stranger,
                gateway="gw-17",
                site="demo-town",
                kind="state",
                seq=44,
                ts=TS + 4,
                data={"status": "online", "key_announcements": [forged]},
            ),
        ),
        "trust-update": _vector(
            "Trust update v7 for gw-17, signed by the current command-post key: the old key "
            "stays valid for a week of overlap, the new one from now on.",
            f"{BASE}/cmd",
            COMMAND_POST_SEED,
            COMMAND_CONTEXT,
            seal_command(cp, command),
        ),
        "key-announcement": _vector(
            "gw-17 announces its new key, signed by its old key; it travels in the state "
            "message's data.key_announcements, and the state is signed by the new key "
            "(rotated-state).",
            f"{BASE}/state (inside data.key_announcements)",
            GATEWAY_SEED,
            ANNOUNCEMENT_CONTEXT,
            announcement,
        ),
    }


def vector_files() -> dict[str, str]:
    return {f"{name}.json": json.dumps(v, indent=2) + "\n" for name, v in build().items()}


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        print(__doc__)
        sys.exit(2)
    VECTOR_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in vector_files().items():
        (VECTOR_DIR / name).write_text(text)
    print(f"wrote {VECTOR_DIR}")
