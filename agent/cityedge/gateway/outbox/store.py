"""`Outbox`: the jobs put together, opened from a file and closed."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from cityedge.gateway.outbox.accepting import Accepting
from cityedge.gateway.outbox.database import connect, move_aside
from cityedge.gateway.outbox.draining import Draining
from cityedge.gateway.outbox.ledger import Ledger, Reserve, reserve_size
from cityedge.gateway.outbox.messages import (
    CHUNK_BYTES,
    CHUNK_ENTRIES,
    EventEncoder,
    Sealer,
    default_event,
)
from cityedge.gateway.outbox.recovery import Recovery
from cityedge.gateway.outbox.stats import Statistics


class Outbox(Accepting, Draining, Recovery, Statistics):
    """The store (see the package docstring): accepting, draining, eviction, recovery,
    statistics."""

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
        ledger = Ledger(path)
        set_aside: Path | None = None
        damage: str | None = None
        if ledger.store and not path.exists():
            damage = "store-missing"
        elif ledger.store and path.stat().st_size == 0:
            # SQLite would take it for a new database: 0 bytes is a store that was emptied
            set_aside, damage = move_aside(path, "0 bytes"), "store-empty"
        try:
            db = connect(path, synchronous)
        except sqlite3.DatabaseError as exc:
            set_aside, damage = move_aside(path, str(exc)), "store-corrupt"
            db = connect(path, synchronous)
        found = db.execute("SELECT value FROM meta WHERE key = 'store'").fetchone()
        if ledger.store and found and int(found[0]) != ledger.store:
            db.close()  # another store put in its place: kept aside, numbering goes on
            set_aside, damage = move_aside(path, "another store"), "store-replaced"
            db = connect(path, synchronous)
        reserve = Reserve(path.with_name(path.name + ".reserve"), reserve_size(max_bytes))
        reserve.ensure()
        # On a full disk the WAL must go into the main file before anything is freed,
        # and that takes as much room as the WAL holds: keep it within half the reserve.
        db.execute(f"PRAGMA wal_autocheckpoint={reserve.size // 2 // 4096}")
        db.execute(f"PRAGMA journal_size_limit={reserve.size // 2}")
        outbox = cls(
            db,
            path,
            seal=seal,
            max_bytes=max_bytes,
            max_age=max_age,
            synchronous=synchronous,
            event_encoder=event_encoder,
            set_aside=set_aside,
            ledger=ledger,
            reserve=reserve,
            chunk_entries=chunk_entries,
            chunk_bytes=chunk_bytes,
        )
        outbox._recover(damage)  # before anything is written: a damaged WAL is copied as is
        outbox._seal_older_store()
        if outbox.pending:
            outbox.commit()  # the alarm: the first message numbered above the mark
        return outbox

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.commit()
            self._flush_acks()
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._db.close()
        self._ledger.close()
