"""What a gateway's outbox file holds right now, read from outside the agent.

Tests and benchmarks count readings that are "accepted but not yet delivered":
sealed in a message that waits for its PUBACK. Opened read-only, so a running
(or just killed) agent's store is never changed.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import msgpack

from cityedge.gateway.outbox import Outbox, stored_messages
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.readings import decode_block
from cityedge.protocol.sealing import message_sealer

TEST_KEY = SigningKey.from_seed(bytes([7]) * 32)

ReadingKey = tuple[str, str, float]  # (device, point, ts)


def committed_readings(db: Path) -> set[ReadingKey]:
    """Every telemetry reading in the store."""
    if not db.exists():
        return set()
    return {_key(entry) for kind, entry in stored_entries(db) if kind == "telemetry"}


def _key(entry: list[object]) -> ReadingKey:
    # as stored_entries gives a reading: [device, point, value, ts, …]
    return (str(entry[0]), str(entry[1]), float(entry[3]))  # type: ignore[arg-type]


def open_outbox(path: Path, **options: Any) -> Outbox:
    """The real store, sealing with a fixed test key as gateway "gw-1"."""
    seal = message_sealer(TEST_KEY, gateway="gw-1", site="test")
    return Outbox.open(path, seal=seal, **options)


def stored_entries(db: Path) -> list[tuple[str, Any]]:
    """(kind, decoded entry) of every message in the store, in sequence order; a
    reading as `[device, point, value, ts, unit, quality]`, from its readings block."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [
            (kind, entry)
            for _, kind, _, payload in stored_messages(conn)
            for entry in _entries(kind, msgpack.unpackb(msgpack.unpackb(payload)["body"])["data"])
        ]
    finally:
        conn.close()


def _entries(kind: str, data: Any) -> list[Any]:
    if kind != "telemetry":
        return list(data)
    return [[r.device, r.point, r.value, r.ts, r.unit, r.quality] for r in decode_block(data)]
