"""Refusals only a command post can make: it knows which gateway a key belongs to and
on which topic a message arrived (docs/protocol.md §4.1, checks 8-9), plus the size
and body-version refusals, each with its topic. Written to
docs/test-vectors/verifier/rejections.json; checked by test_command_vectors.py.

Regenerate after a deliberate change:

    .venv/bin/python -m tests.protocol.verifier_vectors --write
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgpack

from cityedge.protocol.decoding import ENVELOPE_VERSION, MAX_MESSAGE_BYTES
from cityedge.protocol.entries import reading_entry
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.sealing import MESSAGE_CONTEXT, seal
from cityedge.protocol.topics import DEFAULT_PREFIX, topic_for
from cityedge.sdk.model import Reading
from tests.protocol.vectors import GATEWAY, GATEWAY_SEED, SITE, TS, gateway_key

ROOT = Path(__file__).resolve().parents[2]
VECTOR_FILE = ROOT / "docs" / "test-vectors" / "verifier" / "rejections.json"
OTHER_SEED = bytes([0x18]) * 32  # gw-18's key, trusted and bound to gw-18
OTHER = "gw-18"
TOO_LARGE = MAX_MESSAGE_BYTES + 1


def other_key() -> SigningKey:
    return SigningKey.from_seed(OTHER_SEED)


def _telemetry(key: SigningKey, gateway: str, site: str = SITE) -> bytes:
    entry = reading_entry(Reading("lamppost-03", "power", 41.5, TS, "W"))
    return seal(key, gateway=gateway, site=site, kind="telemetry", seq=42, ts=TS + 0.5,
                historical=False, entries=[entry])  # fmt: skip


def _body_version(key: SigningKey) -> bytes:
    outer = msgpack.unpackb(_telemetry(key, GATEWAY))
    body = msgpack.unpackb(outer["body"])
    raw = msgpack.packb({**body, "v": ENVELOPE_VERSION + 1})
    return bytes(msgpack.packb({**outer, "body": raw, "sig": key.sign(MESSAGE_CONTEXT + raw)}))


def build() -> dict[str, Any]:
    gw, other = gateway_key(), other_key()
    good = _telemetry(gw, GATEWAY)

    def at(gateway: str, kind: str = "telemetry", site: str = SITE) -> str:
        return topic_for(DEFAULT_PREFIX, site, gateway, kind)

    cases = [
        ("wrong-topic-gateway", at(OTHER), good, "wrong-topic",
         "gw-17's telemetry published under gw-18's topic"),
        ("wrong-topic-site", at(GATEWAY, site="other-town"), good, "wrong-topic",
         "the body says site demo-town, the topic other-town"),
        ("wrong-topic-kind", at(GATEWAY, "event"), good, "wrong-topic",
         "telemetry published on the events topic"),
        ("wrong-gateway", at(OTHER), _telemetry(gw, OTHER), "wrong-gateway",
         "signed by gw-17's key but speaking as gw-18 (on gw-18's topic)"),
        ("too-large", at(GATEWAY), b"\xc0" * TOO_LARGE, "too-large",
         f"{TOO_LARGE} bytes (0xc0 repeated): refused on the length alone"),
        ("body-version", at(GATEWAY), _body_version(gw), "unsupported-version",
         "validly signed; body v one above the supported version"),
    ]  # fmt: skip
    out = []
    for name, topic, payload, reason, note in cases:
        case: dict[str, Any] = {"name": name, "topic": topic, "reason": reason, "note": note}
        if payload == b"\xc0" * TOO_LARGE:
            case["payload_repeat"] = {"byte_hex": "c0", "count": TOO_LARGE}
        else:
            case["payload_hex"] = payload.hex()
        out.append(case)
    return {
        "name": "verifier-rejections",
        "description": "Messages a command post refuses. Trust both gateway keys, each bound "
        "to its gateway (cityedge central watch --trust gw-17=KEY --trust gw-18=KEY).",
        "trusted": {GATEWAY: {"seed_hex": GATEWAY_SEED.hex(), "public_key": gw.public_text()},
                    OTHER: {"seed_hex": OTHER_SEED.hex(), "public_key": other.public_text()}},
        "cases": out,
    }  # fmt: skip


def file_text() -> str:
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        print(__doc__)
        sys.exit(2)
    VECTOR_FILE.parent.mkdir(parents=True, exist_ok=True)
    VECTOR_FILE.write_text(file_text())
    print(f"wrote {VECTOR_FILE}")
