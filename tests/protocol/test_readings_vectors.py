"""The readings vectors (docs/test-vectors/readings/) are what the code produces, and
decode with nothing but MessagePack, zlib and Ed25519, by the rules of
docs/protocol.md §6.1, written out again here."""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import zlib
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cityedge.protocol.dictionary import DICTIONARY
from cityedge.protocol.key_files import load_trust
from cityedge.protocol.opening import open_message
from tests.protocol import readings_vectors
from tests.protocol.vectors import plain

REGENERATE = "regenerate with: .venv/bin/python -m tests.protocol.readings_vectors --write"
NAMES = ("street-poll", "street-poll-deflate", "value-rules")
QUALITIES = ("good", "clock-unsynced", "substituted")
SPEC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
DICTIONARY_SECTION = SPEC[SPEC.index("#### 6.1.5") : SPEC.index("### 6.2")]


def doc_dictionary() -> bytes:
    """§6.1.5's preset dictionary, built from the doc: its word list, packed."""
    words = re.search(r"```json\n(.*?)```", DICTIONARY_SECTION, re.DOTALL)
    assert words, "§6.1.5 lists no words"
    packed: bytes = msgpack.packb(json.loads(words.group(1)))
    return packed


def inflate(data: bytes) -> bytes:
    return zlib.decompressobj(zdict=doc_dictionary()).decompress(data)


def test_the_documented_dictionary_is_the_codes() -> None:
    built = doc_dictionary()
    assert built == DICTIONARY
    assert f"{len(built):,} bytes" in DICTIONARY_SECTION
    assert hashlib.sha256(built).hexdigest() in DICTIONARY_SECTION
    assert f"{zlib.adler32(built):08x}" in DICTIONARY_SECTION


def published(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((readings_vectors.READINGS_DIR / f"{name}.json").read_text())
    return data


def test_vector_files_match_the_code() -> None:
    current = readings_vectors.vector_files()
    on_disk = sorted(p.name for p in Path(readings_vectors.READINGS_DIR).glob("*.json"))
    assert on_disk == sorted(current)
    for name, text in current.items():
        path = readings_vectors.READINGS_DIR / name
        assert path.read_text() == text, f"{path.name} drifted; {REGENERATE}"


def block_of(body: bytes) -> Any:
    data = msgpack.unpackb(body)["data"]
    return msgpack.unpackb(inflate(data)) if isinstance(data, bytes) else data


def decode_by_the_doc(body: bytes) -> list[dict[str, Any]]:
    """§6.1 read by someone else: tables, then groups of index/value pairs."""
    t0, devices, points, groups = block_of(body)
    out = []
    device, ms = -1, t0  # device and dt are steps from the group before
    for step, dt, quality, *pairs in groups:
        device, ms = device + 1 + step, ms + dt
        for p, value in zip(pairs[::2], pairs[1::2], strict=True):
            name, unit, scale = (points[p] + [None, None])[:3]
            out.append({
                "device": devices[device], "point": name,
                "value": value if scale is None else value / 10**scale,
                "ts": ms / 1000, "unit": unit, "quality": QUALITIES[quality],
            })  # fmt: skip
    return out


def smallest_scale(value: float) -> int | None:
    """The doc's rule: the shortest decimal that reads back as `value`, its fraction
    digits k (trailing zeros dropped) if k <= 6 and |m| <= 2^53."""
    if not math.isfinite(value) or (math.copysign(1.0, value) < 0 and value == 0):
        return None
    shortest = Decimal(repr(value)).normalize()
    k = max(0, -int(shortest.as_tuple().exponent))
    m = int(shortest.scaleb(k))
    assert m / 10**k == value  # the point of the rule: exact
    return k if k <= 6 and abs(m) <= 2**53 else None


@pytest.mark.parametrize("name", NAMES)
def test_vectors_check_out_independently(name: str) -> None:
    v = published(name)
    seed = bytes.fromhex(v["signer"]["seed_hex"])
    private = Ed25519PrivateKey.from_private_bytes(seed)
    context, body = bytes.fromhex(v["context_hex"]), bytes.fromhex(v["body_hex"])
    assert private.sign(context + body).hex() == v["signature_hex"]
    payload = msgpack.unpackb(bytes.fromhex(v["payload_hex"]))
    assert payload == {"v": 2, "kid": v["signer"]["key_id"], "body": body,
                       "sig": bytes.fromhex(v["signature_hex"])}  # fmt: skip
    assert isinstance(msgpack.unpackb(body)["data"], bytes) is v["compressed"]
    assert plain(block_of(body)) == v["block"]
    decoded = decode_by_the_doc(body)
    assert decoded == v["readings"]  # the inputs' times are whole milliseconds
    for got, sent in zip(decoded, v["readings"], strict=True):
        assert type(got["value"]) is type(sent["value"])
        if isinstance(sent["value"], float):
            assert math.copysign(1.0, got["value"]) == math.copysign(1.0, sent["value"])


@pytest.mark.parametrize("name", NAMES)
def test_values_travel_as_the_rules_say(name: str) -> None:
    v = published(name)
    body = bytes.fromhex(v["body_hex"])
    raw = inflate(msgpack.unpackb(body)["data"]) if v["compressed"] else body
    t0, devices, points, groups = block_of(body)
    assert devices == list(dict.fromkeys(r["device"] for r in v["readings"]))
    assert t0 == round(v["readings"][0]["ts"] * 1000)
    by_point = iter([(points[g[j]], g[j + 1]) for g in groups for j in range(3, len(g), 2)])
    for r in v["readings"]:
        entry, carried = next(by_point)
        value = r["value"]
        if type(value) is not float:
            assert len(entry) < 3 and carried == value and type(carried) is type(value)
            continue
        k = smallest_scale(value)
        assert (entry[2] if len(entry) > 2 else None) == k, (r, entry)
        if k is None:
            width = b"\xca" + struct.pack(">f", value)
            narrow = struct.unpack(">f", struct.pack(">f", value))[0] == value
            assert (width in raw) is narrow, r
            if not narrow:
                assert b"\xcb" + struct.pack(">d", value) in raw


def test_the_deflated_poll_is_the_plain_poll_deflated() -> None:
    plain, deflated = published("street-poll"), published("street-poll-deflate")
    assert plain["readings"] == deflated["readings"]
    data = msgpack.unpackb(bytes.fromhex(deflated["body_hex"]))["data"]
    plain_body = bytes.fromhex(plain["body_hex"])
    assert plain_body.endswith(inflate(data))  # the block's bytes, exactly
    assert deflated["sizes"]["payload"] < 0.65 * plain["sizes"]["payload"]
    assert plain["sizes"]["readings"] == 17 * 17


@pytest.mark.parametrize("name", NAMES)
def test_vectors_open_with_our_code(name: str) -> None:
    v = published(name)
    message = open_message(bytes.fromhex(v["payload_hex"]), load_trust([v["signer"]["public_key"]]))
    assert [{**asdict(r), "quality": r.quality.value} for r in message.readings] == v["readings"]
    assert message.raw_body == bytes.fromhex(v["body_hex"])
