"""Draining for the uplink: the next message by priority then age, its sequence
number on disk before it is handed out, resent with the same bytes until the
broker acknowledges it; acknowledged messages are deleted with the next commit.
A message whose bytes no longer match their digest is set aside, never sent."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

import structlog

from cityedge.gateway.outbox.database import digest
from cityedge.gateway.outbox.messages import PRIORITIES_LOW_FIRST, READ_AHEAD, Sealed
from cityedge.gateway.outbox.state import OutboxState
from cityedge.sdk.model import PRIORITY_NAMES

log = structlog.get_logger(__name__)


class Draining(OutboxState):
    """next_message(), ack() and release(): the uplink's side of the outbox."""

    def next_message(self, *, live_after: int, backlog: bool) -> Sealed | None:
        """The next message to publish: highest priority first, oldest first. Live
        messages are those above `live_after` (sealed since the link came up), the
        backlog those at or below it. Its sequence number is on disk before it is
        returned."""
        if not backlog and self._last_seq <= live_after:
            return None  # nothing sealed since the link came up
        for priority in reversed(PRIORITIES_LOW_FIRST):
            key = (priority, backlog)
            ahead = self._ahead.get(key)
            if not ahead:
                ahead = self._fetch(key, live_after)
                if not ahead:
                    continue
            message = ahead.popleft()
            self._cursor[key] = message.seq
            if message.seq > self._durable_seq:
                self._sync()
            self._inflight.add(message.seq)
            return message
        return None

    def _fetch(self, key: tuple[int, bool], live_after: int) -> deque[Sealed] | None:
        priority, backlog = key
        after = self._cursor.get(key, 0 if backlog else live_after)
        end = min(live_after if backlog else self._last_seq, self._top.get(priority, 0))
        while after < end:  # nothing of this priority there: no query
            read = self._db.execute(
                "SELECT seq, kind, payload, count, historical, digest FROM messages "
                "WHERE priority = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                (priority, after, end, READ_AHEAD),
            ).fetchall()
            fetched = deque(
                Sealed(seq, kind, priority, payload, count, bool(historical))
                for seq, kind, payload, count, historical, check in read
                if seq not in self._acked
                and (check is None or digest(payload) == check or self._set_aside_row(seq))
            )
            if fetched:
                self._ahead[key] = fetched
                return fetched
            # acknowledged ones only (deleted at the next commit): read on past them
            after = read[-1][0] if read else end
            self._cursor[key] = after
        return None

    def _set_aside_row(self, seq: int) -> bool:
        """A stored message whose bytes changed on disk: sent, it would be rejected as a
        bad signature and its entries lost without a word. Moved to `damaged` for the
        post-mortem and reported as lost (an `outbox.corrupt` alarm naming it).
        Returns False: the message is not handed out."""
        row = self._db.execute(
            "SELECT kind, priority, count, digest, payload FROM messages WHERE seq = ?", (seq,)
        ).fetchone()
        kind, priority, count, check, payload = row
        with self._transaction(tally=False):
            self._db.execute(
                "INSERT OR REPLACE INTO damaged VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seq, kind, priority, count, check, payload, time.time()),
            )
            self._db.execute("DELETE FROM messages WHERE seq = ?", (seq,))
        self._forget(priority, count, len(payload))
        self._tally()
        data = {"reason": "bad-row", "first_seq": seq, "last_seq": seq,
                "counts": {PRIORITY_NAMES.get(priority, str(priority)): count}}  # fmt: skip
        log.error("outbox.corrupt", path=str(self.path), **data)
        self._buffer.append(self._event("outbox.corrupt", data))
        return False

    def _sync(self) -> None:
        """fsync the WAL (one small FULL transaction covers every frame before it)."""
        with self._transaction(fsync=True):
            self._set_meta_seq(self._last_seq)
        self._durable_seq = self._last_seq

    def release(self) -> None:
        """The link went down: everything not acknowledged is sent again, from the
        oldest, in the next session."""
        self._cursor.clear()
        self._ahead.clear()
        self._inflight.clear()

    def ack(self, messages: Iterable[Sealed]) -> None:
        """The broker acknowledged these. Deleted at the next commit (a crash before
        that means a resend, which the command post drops by sequence number)."""
        for message in messages:
            self._inflight.discard(message.seq)
            self._acked[message.seq] = message
        if len(self._acked) >= 256:
            self._flush_acks()

    def last_seq(self) -> int:
        return self._last_seq
