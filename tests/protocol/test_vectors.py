"""The published test vectors are what the code produces today, they verify with
nothing but an Ed25519 and a MessagePack library, and docs/protocol.md shows them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from cityedge.protocol.commands import open_command
from cityedge.protocol.decoding import EnvelopeError, Reason
from cityedge.protocol.key_files import load_trust
from cityedge.protocol.opening import open_message
from cityedge.sdk.model import ResultCode
from tests.protocol import vectors

REGENERATE = "regenerate with: .venv/bin/python -m tests.protocol.vectors --write"
KINDS = ("telemetry", "event", "state", "command", "result")


@pytest.fixture(scope="module")
def published() -> dict[str, dict[str, Any]]:
    return {
        path.stem: json.loads(path.read_text())
        for path in sorted(vectors.VECTOR_DIR.glob("*.json"))
    }


def test_vector_files_match_the_code(published: dict[str, dict[str, Any]]) -> None:
    current = {name: json.loads(text) for name, text in vectors.vector_files().items()}
    assert sorted(published) == sorted(name.removesuffix(".json") for name in current)
    for name, vector in published.items():
        assert vector == current[f"{name}.json"], (
            f"docs/test-vectors/{name}.json drifted; {REGENERATE}"
        )


def test_protocol_md_shows_the_current_vectors() -> None:
    text = vectors.PROTOCOL_MD.read_text()
    assert vectors.render_protocol(text) == text, f"docs/protocol.md drifted; {REGENERATE}"


@pytest.mark.parametrize("name", KINDS)
def test_vectors_check_out_independently(published: dict[str, dict[str, Any]], name: str) -> None:
    """What a central team would do: nothing of ours but the JSON file."""
    v = published[name]
    seed = bytes.fromhex(v["signer"]["seed_hex"])
    private = Ed25519PrivateKey.from_private_bytes(seed)
    public = private.public_key()
    raw = public.public_bytes_raw()
    assert v["signer"]["public_key"] == "ed25519:" + raw.hex()
    assert v["signer"]["key_id"] == hashlib.sha256(raw).hexdigest()[:16]
    context, body = bytes.fromhex(v["context_hex"]), bytes.fromhex(v["body_hex"])
    signature = bytes.fromhex(v["signature_hex"])
    assert private.sign(context + body) == signature  # Ed25519 is deterministic
    Ed25519PublicKey.from_public_bytes(raw).verify(signature, context + body)
    payload = bytes.fromhex(v["payload_hex"])
    assert msgpack.unpackb(payload) == {
        "v": 2,
        "kid": v["signer"]["key_id"],
        "body": body,
        "sig": signature,
    }
    assert list(msgpack.unpackb(payload)) == ["v", "kid", "body", "sig"]
    decoded = msgpack.unpackb(body)
    assert vectors.plain(decoded) == v["expected_body"]
    if "entries_hex" in v:  # the body ends with the entries, concatenated as stored
        joined = b"".join(bytes.fromhex(e) for e in v["entries_hex"])
        assert body.endswith(joined)
        assert [msgpack.unpackb(bytes.fromhex(e)) for e in v["entries_hex"]] == decoded["data"]


@pytest.mark.parametrize("name", KINDS)
def test_vectors_open_with_our_code(published: dict[str, dict[str, Any]], name: str) -> None:
    v = published[name]
    trusted = load_trust([v["signer"]["public_key"]])
    payload = bytes.fromhex(v["payload_hex"])
    expected = v["expected_body"]
    if name == "command":
        command = open_command(payload, trusted)
        assert (command.id, command.target, command.device, command.op, command.args) == (
            expected["id"],
            expected["target"],
            expected["device"],
            expected["op"],
            expected["args"],
        )
        assert command.key_id == v["signer"]["key_id"]
        return
    message = open_message(payload, trusted)
    assert message.raw_body == bytes.fromhex(v["body_hex"])
    assert (message.gateway, message.site, message.kind, message.seq, message.historical) == (
        expected["gw"],
        expected["site"],
        expected["kind"],
        expected["seq"],
        expected["hist"],
    )
    assert v["topic"].endswith(
        {"telemetry": "/telemetry", "event": "/events", "state": "/state", "result": "/cmd/result"}[
            name
        ]
    )
    if name == "state":
        assert message.state == expected["data"]
    elif name == "telemetry":  # the readings listed beside the block, exactly, in order
        assert [{**asdict(r), "quality": r.quality.value} for r in message.readings] == v[
            "readings"
        ]
    else:
        assert len(message.entries) == len(expected["data"])


def test_rejection_vectors(published: dict[str, dict[str, Any]]) -> None:
    rejections = published["rejections"]
    trusted = load_trust(rejections["trusted"])
    assert len(rejections["cases"]) >= 8
    for case in rejections["cases"]:
        with pytest.raises(EnvelopeError) as err:
            open_message(bytes.fromhex(case["payload_hex"]), trusted)
        assert err.value.code == case["reason"], case["name"]


def test_protocol_md_lists_every_result_code_and_reason() -> None:
    text = vectors.PROTOCOL_MD.read_text()
    for code in ResultCode:
        assert f"| `{code}` |" in text, f"result code {code} missing from docs/protocol.md"
    for reason in Reason:
        assert f"`{reason}`" in text, f"reason {reason} missing from docs/protocol.md"


def test_vector_keys_are_the_rfc_8032_ones() -> None:
    # RFC 8032 §7.1 TEST 1 public key: a re-implementation can start from the RFC.
    assert vectors.gateway_key().public_text() == (
        "ed25519:d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )
    assert vectors.gateway_key().public_key.key_id == vectors.gateway_key().key_id
