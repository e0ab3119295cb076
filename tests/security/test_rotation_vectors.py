"""The rotation vectors in docs/test-vectors/rotation/ are what the code produces, and
they check out with nothing but Ed25519 and MessagePack."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cityedge.central import Verifier
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


NAMES = [
    "trust-update",
    "key-announcement",
    "rotated-state",
    "rotated-telemetry",
    "forged-announcement",
]


@pytest.mark.parametrize("name", NAMES)
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


def test_messages_signed_by_the_new_key_verify_after_the_rotation() -> None:
    """A command post trusting only gw-17's old key: the rotated state teaches it the
    new key (bound to gw-17), and telemetry signed by the new key then verifies."""
    gw = SigningKey.from_seed(rv.GATEWAY_SEED)
    new = SigningKey.from_seed(rv.NEW_GATEWAY_SEED)
    verifier = Verifier({gw.key_id: gw.public_key}, bindings={gw.key_id: "gw-17"})
    telemetry = json.loads((rv.VECTOR_DIR / "rotated-telemetry.json").read_text())
    payload = bytes.fromhex(telemetry["payload_hex"])
    assert verifier.verify(telemetry["topic"], payload).reason == "unknown-key"
    state = json.loads((rv.VECTOR_DIR / "rotated-state.json").read_text())
    verdict = verifier.verify(state["topic"], bytes.fromhex(state["payload_hex"]))
    assert verdict.accepted and verdict.rotated == ((gw.key_id, new.key_id),)
    assert verifier.verify(telemetry["topic"], payload).accepted


def test_a_forged_announcement_leaves_the_state_refused() -> None:
    gw = SigningKey.from_seed(rv.GATEWAY_SEED)
    verifier = Verifier({gw.key_id: gw.public_key}, bindings={gw.key_id: "gw-17"})
    forged = json.loads((rv.VECTOR_DIR / "forged-announcement.json").read_text())
    verdict = verifier.verify(forged["topic"], bytes.fromhex(forged["payload_hex"]))
    assert verdict.reason == "unknown-key" and verdict.detail.startswith("key announcement: ")
    assert verifier.gateway_keys.keys() == {gw.key_id}
