"""Replay the messages ingest refused for an unknown key, once the key is trusted.

Such a message (a gateway not enrolled yet) is kept whole in `rejected.payload`. A
replay reads those rows in id order, a chunk at a time, verifies each one again through
the very path of live messages (`SharedTrust`: the same verifier, the key bindings of
the store) and stores what passes with `Store.write`, which marks the rows replayed in
the same transaction. The database's (gateway, seq) key drops what it holds already,
so replaying twice stores nothing twice, and the holes a gateway's refused messages
left close. What is still refused stays, counted by its reason now.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from cityedge.central.ingest.decode import Decoded, Ignored
from cityedge.central.ingest.store.base import Store, WriteReport
from cityedge.central.ingest.trust import SharedTrust


@dataclass(slots=True)
class ReplayReport:
    waiting: int = 0  # rows kept whole and not replayed when the replay began
    seen: int = 0  # of them, verified again
    replayed: int = 0  # accepted now (stored, or already there) and marked replayed
    written: WriteReport = field(default_factory=WriteReport)
    refused: Counter[str] = field(default_factory=Counter)  # still refused, by reason
    why: dict[str, str] = field(default_factory=dict)  # reason -> one example's topic: detail


Progress = Callable[["ReplayReport"], None]


async def replay(store: Store, trust: SharedTrust, *, chunk: int = 500,
                 progress: Progress | None = None) -> ReplayReport:  # fmt: skip
    """Replay every kept row there is when it starts (rows refused meanwhile wait for the
    next replay), `chunk` rows per transaction."""
    report = ReplayReport(waiting=sum(c.kept for c in await store.rejections()))
    after = 0
    while report.seen < report.waiting:  # bounded: each round takes at least one row
        rows = await store.kept(after, min(chunk, report.waiting - report.seen))
        if not rows:
            break  # another replay took the rest
        after = rows[-1].id
        outcomes = await trust.decode([(row.topic, row.payload) for row in rows])
        decoded: list[Decoded] = []
        done: list[int] = []
        for row, outcome in zip(rows, outcomes, strict=True):
            if isinstance(outcome, Decoded):
                decoded.append(outcome)
                done.append(row.id)
            elif isinstance(outcome, Ignored):  # a command on the bus: nothing to store
                done.append(row.id)
            else:
                report.refused[outcome.reason] += 1
                report.why.setdefault(outcome.reason, f"{row.topic}: {outcome.detail}")
        report.written.add(await store.write(decoded, [], replayed=done))
        report.seen += len(rows)
        report.replayed += len(done)
        if progress is not None:
            progress(report)
    return report
