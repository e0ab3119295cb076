"""What the outbox reports about itself (control socket, metrics, diagnostics)."""

from __future__ import annotations

from dataclasses import dataclass

from cityedge.gateway.outbox.state import OutboxState


@dataclass(slots=True)
class OutboxStats:
    rows: dict[int, int]  # entries waiting for their PUBACK, by priority
    bytes: int
    sealed_unacked: int  # messages handed to the uplink, awaiting their PUBACK
    oldest_ts: float | None
    last_seq: int
    pending: int
    evicted: dict[str, int]
    commits: int
    rows_committed: int
    bytes_committed: int
    disk_full: bool
    set_aside: str | None


class Statistics(OutboxState):
    def stats(self) -> OutboxStats:
        rows: dict[int, int] = {}
        for p, n in self._db.execute("SELECT priority, SUM(count) FROM messages GROUP BY priority"):
            rows[int(p)] = int(n)
        for m in self._acked.values():  # deleted at the next commit: already delivered
            rows[m.priority] -= m.entry_count
        rows = {p: n for p, n in rows.items() if n > 0}
        oldest = self._db.execute("SELECT MIN(first_ts) FROM messages").fetchone()[0]
        return OutboxStats(
            rows=rows,
            bytes=self._bytes - sum(len(m.payload) for m in self._acked.values()),
            sealed_unacked=len(self._inflight),
            oldest_ts=oldest,
            last_seq=self._last_seq,
            pending=len(self._buffer),
            evicted=dict(self.counters.evicted),
            commits=self.counters.commits,
            rows_committed=self.counters.rows_committed,
            bytes_committed=self.counters.bytes_committed,
            disk_full=self._disk_full,
            set_aside=str(self.set_aside) if self.set_aside else None,
        )
