"""Opening a store against its ledger (ledger.py): a store that holds less than it
did is reported, and numbering resumes above the high-water mark.

What can happen to a store between two runs, what SQLite makes of it, and how
it is noticed here:

- corrupt pages: `quick_check` fails and database.py sets the file aside; the
  ledger names a store, and a new one opens;
- emptied to 0 bytes, or deleted: SQLite opens a new, empty database; the
  store's identity (in `meta`) is missing;
- WAL deleted, or frames damaged, after kill -9: SQLite opens the store as of
  the last checkpoint, or the last good frame; its last sequence number is
  below its tally's.

In each case the lost numbers are reported in one `outbox.corrupt` alarm:
`first_seq`..`last_seq` will never arrive (the command post accounts for them,
docs/protocol.md), `held_last_seq` the last one the store had committed (above
it, numbers were reserved but never used), `counts` the entries lost by priority.
"""

from __future__ import annotations

import secrets
from typing import Any

import structlog

from cityedge.gateway.outbox.database import copy_aside
from cityedge.gateway.outbox.state import OutboxState
from cityedge.sdk.model import PRIORITY_NAMES

log = structlog.get_logger(__name__)


class Recovery(OutboxState):
    def _recover(self, damage: str | None) -> None:
        """Right after opening, before anything is written. `damage`: what opening
        already found (the file was corrupt, empty or missing), if anything."""
        ledger, tally = self._ledger, self._ledger.tally
        if tally is not None and tally.store != ledger.store:
            tally = None  # the tally of another store: it says nothing about this one
        loss: dict[str, Any] | None = None
        if ledger.store and not self._store_id:
            # the store the ledger knows is gone: everything it held is lost
            loss = {"reason": damage or "store-lost",
                    "first_seq": tally.low if tally else 1,
                    "held_last_seq": tally.last if tally else None,
                    "counts": tally.counts() if tally else {}}  # fmt: skip
        elif tally is not None and self._last_seq < tally.last:
            # same store, fewer numbers: committed transactions vanished with the WAL
            still = dict(self._db.execute(
                "SELECT priority, SUM(count) FROM messages WHERE seq >= ? GROUP BY priority",
                (tally.low,),
            ).fetchall())  # fmt: skip
            counts = {p: n - int(still.get(p) or 0) for p, n in tally.counts().items()}
            aside = copy_aside(self.path.with_name(self.path.name + "-wal"), "wal-lost")
            self.set_aside = aside or self.set_aside
            loss = {"reason": "wal-lost", "first_seq": self._last_seq + 1,
                    "held_last_seq": tally.last,
                    "counts": {p: n for p, n in counts.items() if n > 0}}  # fmt: skip
        elif damage is not None:
            loss = {"reason": damage, "first_seq": None, "held_last_seq": None, "counts": {}}
        new = not self._store_id
        if new:
            self._store_id = secrets.randbits(62) + 1
        if loss is not None:
            self._resume_above_mark(loss)
        elif new:  # a new store, or one from before the ledger: known from now on
            self._ledger.reserve(self._last_seq, self._store_id)
            with self._transaction():
                self._set_meta("store", self._store_id)

    def _resume_above_mark(self, loss: dict[str, Any]) -> None:
        """Numbers up to the mark may have been used: the next one is above it, and the
        alarm accounts for all of [first_seq, last_seq]."""
        tally = self._ledger.tally
        held = loss["held_last_seq"]
        base = max(self._ledger.reserved, self._last_seq, held or 0, tally.last if tally else 0)
        if loss["first_seq"] is None:  # a corrupt store and no ledger yet: nothing known
            loss["first_seq"] = self._last_seq + 1 if base > self._last_seq else None
        self._ledger.reserve(base, self._store_id)
        with self._transaction(fsync=True):
            self._set_meta("store", self._store_id)
            self._set_meta_seq(base)
        self._last_seq = self._durable_seq = base
        self._tally()
        data: dict[str, Any] = {
            "reason": loss["reason"],
            "set_aside": str(self.set_aside) if self.set_aside else None,
            "held_last_seq": held,
            "counts": {PRIORITY_NAMES.get(p, str(p)): n for p, n in loss["counts"].items()},
        }
        if loss["first_seq"] is not None and loss["first_seq"] <= base:
            data["first_seq"], data["last_seq"] = loss["first_seq"], base
        log.error("outbox.lost", path=str(self.path), **data)
        self._buffer.append(self._event("outbox.corrupt", data))
