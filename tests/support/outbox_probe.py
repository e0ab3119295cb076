"""What a gateway's outbox file holds right now, read from outside the agent.

Tests and benchmarks count readings that are "accepted but not yet delivered":
queued in chunks, or sealed in a message that waits for its PUBACK. Opened
read-only, so a running (or just killed) agent's store is never changed.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgpack

from agent.outbox import stored_chunks

ReadingKey = tuple[str, str, float]  # (device, point, ts)


def committed_readings(db: Path) -> set[ReadingKey]:
    """Every telemetry reading in the store: queued entries and sealed messages."""
    if not db.exists():
        return set()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    found: set[ReadingKey] = set()
    try:
        for _, kind, *_, bodies in stored_chunks(conn):
            if kind == "telemetry":
                found.update(_key(msgpack.unpackb(body)) for body in bodies)
        for (payload,) in conn.execute("SELECT payload FROM messages WHERE kind = 'telemetry'"):
            body = msgpack.unpackb(msgpack.unpackb(payload)["body"])
            found.update(_key(entry) for entry in body["data"])
    finally:
        conn.close()
    return found


def _key(entry: list[object]) -> ReadingKey:
    # a reading entry is [device, point, value, ts, …] (docs/protocol.md)
    return (str(entry[0]), str(entry[1]), float(entry[3]))  # type: ignore[arg-type]
