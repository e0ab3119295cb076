"""The command vectors (docs/test-vectors/commands/) and the command post's rejection
vectors (docs/test-vectors/verifier/) are what the code produces today, byte for byte;
they check out with nothing but SHA-256, Ed25519 and MessagePack; and they cover
every result code and every operation the gateway has."""

from __future__ import annotations

import hashlib
import json
import tomllib
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cityedge.central import Verifier
from cityedge.gateway.commands import OPERATIONS
from cityedge.protocol.commands import COMMAND_KIND
from cityedge.protocol.decoding import ENVELOPE_VERSION
from cityedge.protocol.key_files import load_trust
from cityedge.protocol.sealing import COMMAND_CONTEXT
from cityedge.sdk.model import ResultCode
from tests.protocol import command_vectors as cv
from tests.protocol import vectors
from tests.protocol import verifier_vectors as vv

REGENERATE = "regenerate with: .venv/bin/python -m tests.protocol.command_vectors --write"
# Codes a command can get only from a running agent's devices or uplink.
NOT_IN_VECTORS = {ResultCode.BUSY, ResultCode.UNREACHABLE, ResultCode.TIMED_OUT,
                  ResultCode.REJECTED}  # fmt: skip
UNVERIFIED = {"too-large", "malformed", "unsupported-version", "unknown-key", "bad-signature"}


@pytest.fixture(scope="module")
def built() -> dict[str, dict[str, Any]]:
    return cv.build()


@pytest.fixture(scope="module")
def published() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(cv.VECTOR_DIR.glob("*.json"))}


def test_files_and_doc_match_the_code(built: dict[str, dict[str, Any]]) -> None:
    for name, text in cv.vector_files(built).items():
        path = cv.VECTOR_DIR / name
        assert path.exists() and path.read_text() == text, f"{name} drifted; {REGENERATE}"
    doc = cv.PROTOCOL_MD.read_text()
    assert cv.render_protocol(doc, built) == doc, f"docs/protocol.md §8.6 drifted; {REGENERATE}"
    assert vv.VECTOR_FILE.read_text() == vv.file_text(), (
        "verifier/rejections.json drifted; regenerate with: "
        ".venv/bin/python -m tests.protocol.verifier_vectors --write"
    )


def _cases(published: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = [*published["operations"]["cases"]]
    cases += published["refusals"]["cases"]
    return cases


def test_every_result_names_its_payload_by_digest(published: dict[str, dict[str, Any]]) -> None:
    """What a command post does: SHA-256 of the bytes it sent, cut to 16 bytes."""
    for case in _cases(published):
        payload = cv.payload_of(case)
        digest = hashlib.sha256(payload).digest()[:16]
        assert case["digest_hex"] == digest.hex(), case["name"]
        if not case["answered"]:
            continue
        entry = msgpack.unpackb(bytes.fromhex(case["result_entry_hex"]))
        assert entry[1] == digest, case["name"]
        assert vectors.plain(entry) == case["result"]
        assert entry[3] == published["operations"]["now"]


def test_unverified_commands_are_never_answered_under_an_id(
    published: dict[str, dict[str, Any]],
) -> None:
    for case in published["refusals"]["cases"]:
        if not case["answered"]:
            continue
        command_id, code = case["result"][0], case["result"][2]
        body = _verified_body(published["refusals"], case)
        if body is None:
            assert command_id == "" and code in UNVERIFIED, case["name"]
        else:
            assert command_id == body["id"], case["name"]


def _verified_body(published: dict[str, Any], case: dict[str, Any]) -> dict[str, Any] | None:
    """The body of a payload signed by the command post's key under the command
    context (a check of our own, with the cryptography package), else None."""
    try:
        outer = msgpack.unpackb(cv.payload_of(case))
    except Exception:  # not MessagePack: the point of some vectors
        return None
    seed = bytes.fromhex(published["command_post"]["seed_hex"])
    if not isinstance(outer, dict) or not isinstance(outer.get("body"), bytes):
        return None
    if (
        outer.get("v") != ENVELOPE_VERSION
        or outer.get("kid") != published["command_post"]["key_id"]
    ):
        return None
    expected = Ed25519PrivateKey.from_private_bytes(seed).sign(COMMAND_CONTEXT + outer["body"])
    if outer.get("sig") != expected:
        return None
    body = msgpack.unpackb(outer["body"])
    return body if isinstance(body, dict) and isinstance(body.get("id"), str) else None


def test_security_events_are_named_after_the_result_code(
    published: dict[str, dict[str, Any]],
) -> None:
    for case in _cases(published):
        kinds = [event[0] for event in case["events"]]
        if case["answered"] and case["result"][2] in {c.value for c in ResultCode} - {"done"}:
            code = case["result"][2]
            security = [e for e in case["events"] if e[0].startswith("security.")]
            for event in security:
                assert event[0] == f"security.{code}" and event[5]["code"] == code
        if not case["answered"]:  # a copy of bytes already answered: counted, not answered
            assert kinds == ["security.replayed"] and case["events"][0][5]["unanswered"] == 1


def test_vectors_cover_every_code_and_operation(published: dict[str, dict[str, Any]]) -> None:
    codes = {case["result"][2] for case in _cases(published) if case["answered"]}
    assert codes == {c.value for c in ResultCode} - NOT_IN_VECTORS
    ops = set()
    for case in published["operations"]["cases"]:
        body = msgpack.unpackb(msgpack.unpackb(cv.payload_of(case))["body"])
        assert body["kind"] == COMMAND_KIND and case["result"][2] == "done", case["name"]
        ops.add(body["op"])
    assert ops == set(OPERATIONS)


def test_the_write_vector_writes_a_point_the_shipped_lamppost_has(
    published: dict[str, dict[str, Any]],
) -> None:
    profile = tomllib.loads(cv.PROFILE.read_text())
    writable = {p["name"] for p in profile["points"] if p.get("access") == "rw"}
    (write,) = [c for c in published["operations"]["cases"] if c["name"] == "write"]
    body = msgpack.unpackb(msgpack.unpackb(cv.payload_of(write))["body"])
    assert body["device"] == published["operations"]["device"]["name"]
    assert body["args"]["point"] in writable
    assert write["result"][5:7] == [body["args"]["value"], True]  # read back, matched


def test_verifier_rejections() -> None:
    doc = json.loads(vv.VECTOR_FILE.read_text())
    keys = {gw: load_trust([spec["public_key"]]) for gw, spec in doc["trusted"].items()}
    trusted = {kid: key for one in keys.values() for kid, key in one.items()}
    bindings = {kid: gw for gw, one in keys.items() for kid in one}
    assert len(doc["cases"]) >= 6
    for case in doc["cases"]:
        verifier = Verifier(trusted, bindings=bindings)
        verdict = verifier.verify(case["topic"], cv.payload_of(case))
        assert not verdict.accepted and verdict.reason == case["reason"], (case, verdict)
