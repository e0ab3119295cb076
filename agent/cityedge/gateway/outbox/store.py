"""`Outbox`: the jobs put together, opened from a file and closed."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from cityedge.gateway.outbox.accepting import Accepting
from cityedge.gateway.outbox.database import connect, move_aside
from cityedge.gateway.outbox.draining import Draining
from cityedge.gateway.outbox.messages import (
    CHUNK_BYTES,
    CHUNK_ENTRIES,
    EventEncoder,
    Sealer,
    default_event,
)
from cityedge.gateway.outbox.stats import Statistics


class Outbox(Accepting, Draining, Statistics):
    """The store (see the package docstring): accepting, draining, eviction, statistics."""

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        seal: Sealer,
        max_bytes: int,
        max_age: float,
        synchronous: str = "normal",
        event_encoder: EventEncoder = default_event,
        chunk_entries: int = CHUNK_ENTRIES,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> Outbox:
        """Open (or create) the store. Messages carry at most `chunk_entries` entries
        and `chunk_bytes` bytes: the uplink's batch limits."""
        path.parent.mkdir(parents=True, exist_ok=True)
        set_aside: Path | None = None
        try:
            db = connect(path, synchronous)
        except sqlite3.DatabaseError as exc:
            set_aside = move_aside(path, str(exc))
            db = connect(path, synchronous)
        outbox = cls(
            db,
            path,
            seal=seal,
            max_bytes=max_bytes,
            max_age=max_age,
            synchronous=synchronous,
            event_encoder=event_encoder,
            set_aside=set_aside,
            chunk_entries=chunk_entries,
            chunk_bytes=chunk_bytes,
        )
        outbox._seal_older_store()
        if set_aside is not None:
            outbox.add([outbox._event("outbox.corrupt", {"set_aside": str(set_aside)})])
            outbox.commit()
        return outbox

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.commit()
            self._flush_acks()
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._db.close()
