"""The outbox's SQLite file, opened read-only: for checks, stats and export with the agent stopped.

Never writes, never takes a write lock: `mode=ro` on the URI, and `query_only`
on top. Entries are shown decoded (a reading as device, point, value, …) from
the MessagePack arrays the envelope module writes (docs/protocol.md).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import msgpack

from cityedge.gateway.outbox import stored_messages
from cityedge.protocol.readings import decode_block
from cityedge.sdk.model import PRIORITY_NAMES

FIELDS = {
    "telemetry": ("device", "point", "value", "ts", "unit", "quality"),
    "event": ("kind", "source", "ts", "severity", "active", "data"),
    "result": ("command", "code", "ts", "detail", "readback", "readback_matched", "data"),
}


class OutboxFileError(Exception):
    """The file cannot be read as an outbox; the message names the file and why."""


def open_readonly(path: Path, timeout: float = 2.0) -> sqlite3.Connection:
    if not path.exists():
        raise OutboxFileError(f"{path}: no such file")
    try:
        db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=timeout)
        db.execute("PRAGMA query_only = ON")
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise OutboxFileError(f"{path}: {exc}") from None
    return db


def quick_check(path: Path) -> str:
    """SQLite's `quick_check` verdict: "ok", or the first problem it found."""
    db = open_readonly(path)
    try:
        rows = db.execute("PRAGMA quick_check(5)").fetchall()
    except sqlite3.Error as exc:
        raise OutboxFileError(f"{path}: {exc}") from None
    finally:
        db.close()
    return "; ".join(str(r[0]) for r in rows) or "no answer"


def file_stats(path: Path, now: float | None = None) -> dict[str, Any]:
    """The same shape as the running agent's `outbox` answer, from the file alone."""
    now = time.time() if now is None else now
    db = open_readonly(path)
    try:
        rows = {
            PRIORITY_NAMES.get(int(p), str(p)): int(n)
            for p, n in db.execute("SELECT priority, SUM(count) FROM messages GROUP BY priority")
        }
        stored_bytes, oldest = db.execute(
            "SELECT COALESCE(SUM(LENGTH(payload)), 0), MIN(NULLIF(first_ts, 0)) FROM messages"
        ).fetchone()
        seq = db.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
    except sqlite3.Error as exc:
        raise OutboxFileError(f"{path}: not a readable outbox ({exc})") from None
    finally:
        db.close()
    return {
        "path": str(path),
        "rows": rows,
        "depth": sum(rows.values()),
        "bytes": int(stored_bytes),
        "oldest_ts": oldest,
        "oldest_age": None if oldest is None else max(0.0, now - float(oldest)),
        "sealed_unacked": 0,  # with the agent stopped, nothing is on its way
        "last_seq": int(seq[0]) if seq else 0,
        "file_bytes": path.stat().st_size,
        "source": "file",
    }


def count_entries(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT COALESCE(SUM(count), 0) FROM messages").fetchone()[0])


def entries(db: sqlite3.Connection) -> Iterator[dict[str, Any]]:
    """Every entry, message by message in sequence order."""
    for seq, kind, priority, payload in stored_messages(db):
        for entry in _message_entries(kind, payload):
            yield {"seq": seq, **_entry(kind, priority, entry)}


def export(path: Path, out: TextIO, progress: Callable[[int, int], None] | None = None) -> int:
    """Write every entry as one JSON line; `progress(done, total)` now and then."""
    db = open_readonly(path)
    try:
        total = count_entries(db)
        done = 0
        for item in entries(db):
            out.write(json.dumps(item, ensure_ascii=False, default=_plain) + "\n")
            done += 1
            if progress is not None and (done % 500 == 0 or done == total):
                progress(done, total)
    except sqlite3.Error as exc:
        raise OutboxFileError(f"{path}: {exc}") from None
    finally:
        db.close()
    if progress is not None:
        progress(done, max(total, done))
    return done


def _message_entries(kind: str, payload: bytes) -> list[Any]:
    """The entries as arrays; readings out of their block, as the pipeline made them."""
    try:
        outer = msgpack.unpackb(payload, raw=False)
        body = msgpack.unpackb(outer["body"], raw=False)
        data = body["data"]
        if kind == "telemetry":
            return [[r.device, r.point, r.value, r.ts, r.unit, r.quality.value]
                    for r in decode_block(data)]  # fmt: skip
    except Exception:  # EnvelopeError, or a payload that is not a message at all
        return [None]
    return data if isinstance(data, list) else [None]


def _entry(kind: str, priority: int, decoded: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"kind": kind, "priority": PRIORITY_NAMES.get(priority, priority)}
    names = FIELDS.get(kind)
    if isinstance(decoded, list) and names is not None and len(decoded) <= len(names):
        item.update(zip(names, decoded, strict=False))
    else:
        item["undecodable"] = True
    return item


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)
