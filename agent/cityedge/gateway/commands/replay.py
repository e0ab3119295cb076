"""Command ids already seen, kept in SQLite until they expire: a replayed command
is refused even after a restart or a power cut."""

from __future__ import annotations

import sqlite3
from pathlib import Path


class ReplayCache:
    """Command ids seen, kept until their expiry (plus skew) in SQLite: survives restarts."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a replay window must not reopen on power loss
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, until REAL NOT NULL)"
        )

    def seen_before(self, command_id: str, until: float) -> bool:
        """Record `command_id`; True if it was already recorded."""
        cur = self._db.execute(
            "INSERT OR IGNORE INTO seen (id, until) VALUES (?, ?)", (command_id, until)
        )
        return cur.rowcount == 0

    def purge(self, now: float) -> int:
        return self._db.execute("DELETE FROM seen WHERE until < ?", (now,)).rowcount

    def close(self) -> None:
        self._db.close()
