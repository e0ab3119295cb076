"""Command ids seen, with the digest of the payload that carried them, kept in SQLite
until they expire: a replayed command is refused even after a restart or a power
cut, and a second copy of the very same bytes is told from a new payload that
reuses an id (docs/protocol.md §8.3)."""

from __future__ import annotations

import sqlite3
from pathlib import Path


class ReplayCache:
    """Command ids recorded, each with its payload digest, until `until` (the command's
    expiry plus the clock allowance); purged past that. Only commands that passed
    every check before it are recorded: a refused id is not remembered."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a replay window must not reopen on power loss
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS recorded "
            "(id TEXT PRIMARY KEY, digest BLOB NOT NULL, until REAL NOT NULL)"
        )

    def record(self, command_id: str, digest: bytes, until: float) -> bytes | None:
        """Record `command_id`; None if it is new, else the digest it was first seen with."""
        cur = self._db.execute(
            "INSERT OR IGNORE INTO recorded (id, digest, until) VALUES (?, ?, ?)",
            (command_id, digest, until),
        )
        if cur.rowcount == 1:
            return None
        row = self._db.execute("SELECT digest FROM recorded WHERE id = ?", (command_id,)).fetchone()
        return bytes(row[0]) if row else b""

    def purge(self, before: float) -> int:
        return self._db.execute("DELETE FROM recorded WHERE until < ?", (before,)).rowcount

    def close(self) -> None:
        self._db.close()
