"""The rotation vectors in docs/test-vectors/rotation/ are what the code produces, and
they check out with nothing but Ed25519 and MessagePack."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cityedge.protocol.announcements import open_key_announcement
from cityedge.protocol.commands import open_command
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.trust_store import parse_trust_update
from tests.security import rotation_vectors as rv

REGENERATE = "regenerate with: .venv/bin/python -m tests.security.rotation_vectors --write"


def test_files_match_the_code() -> None:
    for name, text in rv.vector_files().items():
        path = rv.VECTOR_DIR / name
        assert path.exists() and path.read_text() == text, f"{path.name} drifted; {REGENERATE}"


@pytest.mark.parametrize("name", ["trust-update", "key-announcement"])
def test_vectors_check_out_independently(name: str) -> None:
    v = json.loads((rv.VECTOR_DIR / f"{name}.json").read_text())
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(v["signer"]["seed_hex"]))
    signed = bytes.fromhex(v["context_hex"]) + bytes.fromhex(v["body_hex"])
    assert private.sign(signed).hex() == v["signature_hex"]


def test_vectors_open_with_our_code() -> None:
    cp = SigningKey.from_seed(rv.COMMAND_POST_SEED)
    gw = SigningKey.from_seed(rv.GATEWAY_SEED)
    update = json.loads((rv.VECTOR_DIR / "trust-update.json").read_text())
    command = open_command(bytes.fromhex(update["payload_hex"]), {cp.key_id: cp.public_key})
    assert parse_trust_update(command.args).version == 7
    ann = json.loads((rv.VECTOR_DIR / "key-announcement.json").read_text())
    opened = open_key_announcement(bytes.fromhex(ann["payload_hex"]), {gw.key_id: gw.public_key})
    assert opened.new_key_id == SigningKey.from_seed(rv.NEW_GATEWAY_SEED).key_id
