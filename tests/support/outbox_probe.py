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
from cityedge.protocol.sealing import message_sealer

TEST_KEY = SigningKey.from_seed(bytes([7]) * 32)

ReadingKey = tuple[str, str, float]  # (device, point, ts)


def committed_readings(db: Path) -> set[ReadingKey]:
    """Every telemetry reading in the store."""
    if not db.exists():
        return set()
    return {_key(entry) for kind, entry in stored_entries(db) if kind == "telemetry"}


def _key(entry: list[object]) -> ReadingKey:
    # a reading entry is [device, point, value, ts, …] (docs/protocol.md)
    return (str(entry[0]), str(entry[1]), float(entry[3]))  # type: ignore[arg-type]


def open_outbox(path: Path, **options: Any) -> Outbox:
    """The real store, sealing with a fixed test key as gateway "gw-1"."""
    seal = message_sealer(TEST_KEY, gateway="gw-1", site="test")
    return Outbox.open(path, seal=seal, **options)


def stored_entries(db: Path) -> list[tuple[str, Any]]:
    """(kind, decoded entry) of every message in the store, in sequence order."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [
            (kind, entry)
            for _, kind, _, payload in stored_messages(conn)
            for entry in msgpack.unpackb(msgpack.unpackb(payload)["body"])["data"]
        ]
    finally:
        conn.close()
