"""What every store offers ingest, and the part of a write both stores share.

`write` stores a batch in ONE transaction: messages new to the database (the
primary key (gateway, seq) decides, so resends and redeliveries are dropped
there), their readings, events and results, the gateways' last state, and each
gateway's sequence state and holes, advanced under a lock on the gateway's row.
It returns only once the transaction committed; then the batch may be acknowledged.

Key bindings live here too, so every worker and every restart agree: `claim` binds a
key to a gateway (the first claim wins, whoever makes it) and `bindings` reads what
the store holds; `retire` marks a key never to be trusted again and `retirements`
tells a worker, cheaply, whether it must re-read the retired keys (docs/command-post.md,
"Retiring a key"). Rejected messages kept whole (`unknown-key`) are read back by
`kept` and marked replayed by the `write` that stores them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from cityedge.central.ingest.decode import Decoded, Rejected
from cityedge.central.ingest.holes import Range


@dataclass(slots=True)
class WriteReport:
    messages: int = 0  # stored for the first time
    duplicates: int = 0  # already in the database (or twice in the batch)
    readings: int = 0
    events: int = 0
    results: int = 0
    states: int = 0
    rejected: int = 0
    opened: list[tuple[str, Range]] = field(default_factory=list)  # (gateway, hole)
    closed: int = 0  # sequence numbers that filled a hole

    def add(self, other: WriteReport) -> None:
        for name in ("messages", "duplicates", "readings", "events", "results", "states",
                     "rejected", "closed"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.opened += other.opened


@dataclass(frozen=True, slots=True)
class Hole:
    gateway: str
    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True)
class Totals:
    messages: int
    readings: int
    holes: int  # ranges open
    missing: int  # sequence numbers in them


@dataclass(frozen=True, slots=True)
class Binding:
    """A key bound to its gateway. A key a rotation brought carries its raw public key and
    the key whose announcement vouched for it; a binding learned from traffic or given
    with GATEWAY=KEY carries neither (the key itself comes from the operator's trust).
    Read back from the store, it says when it was bound and, once retired, when and why
    (a claim never sets these)."""

    key_id: str
    gateway: str
    public_key: bytes | None = None
    vouched_by: str | None = None
    bound: float | None = None  # epoch seconds
    retired: float | None = None
    retired_reason: str | None = None


class Retire(StrEnum):
    """What `Store.retire` did."""

    RETIRED = "retired"
    ALREADY = "already"  # retired before: nothing changed
    UNKNOWN = "unknown"  # no such key in key_bindings
    LAST = "last"  # the gateway's last key still trusted, and not forced: nothing changed


@dataclass(frozen=True, slots=True)
class Kept:
    """A rejected message kept whole, waiting for a replay."""

    id: int
    topic: str
    reason: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class RejectedCount:
    reason: str
    topic: str
    count: int  # rows not replayed
    kept: int  # of them, with the whole envelope (replayable)
    replayed: int  # rows already replayed


class StoreError(Exception):
    """The database refused or went away: nothing of the batch was committed."""


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, messages: Sequence[Decoded], rejected: Sequence[Rejected],
                    replayed: Sequence[int] = ()) -> WriteReport:  # fmt: skip
        """Store a batch in one transaction (marking the `replayed` rejected rows, by id);
        raise StoreError if it did not commit."""
        ...

    async def bindings(self, key_ids: Collection[str]) -> dict[str, Binding]:
        """What the store holds of these keys (absent: bound to no gateway yet)."""
        ...

    async def claim(self, claims: Sequence[Binding]) -> dict[str, Binding]:
        """Bind each key unless it is bound already (the first claim wins; a rotation's
        key and voucher are added to a binding of the same gateway), in one transaction;
        return what the store holds of each key afterwards."""
        ...

    async def keys(self) -> list[Binding]:
        """Every binding, by gateway then bound time."""
        ...

    async def retire(self, key_id: str, reason: str | None,
                     force: bool) -> tuple[Retire, Binding | None]:  # fmt: skip
        """Mark `key_id` retired, in one transaction that locks its gateway's keys (two
        operators never retire a gateway's last two keys at once); without `force`, the
        gateway's last key not retired is refused. Return what was done and the binding."""
        ...

    async def retirements(self, known: int) -> tuple[int, list[Binding]]:
        """The number of retired keys (rows are never deleted and a retirement is never
        undone, so it changes exactly when a key is retired) and, if it is not `known`,
        every retired key; one cheap query when nothing changed."""
        ...

    async def kept(self, after: int, limit: int) -> list[Kept]:
        """Rejected rows kept whole and not replayed yet, by id, the first `limit` above
        `after`."""
        ...

    async def rejections(self) -> list[RejectedCount]:
        """Rejected rows counted by reason and topic."""
        ...

    async def holes(self) -> list[Hole]: ...

    async def totals(self) -> Totals: ...


def claimed(held: dict[str, Binding], claims: Sequence[Binding]) -> bool:
    """Whether the store binds every claimed key to the claimed gateway."""
    return all(c.key_id in held and held[c.key_id].gateway == c.gateway for c in claims)


def by_gateway(messages: Sequence[Decoded]) -> dict[str, list[Decoded]]:
    """Sequenced messages grouped per gateway, in gateway order (locks are always taken
    in that order, so two workers never deadlock), each gateway's seqs once."""
    groups: dict[str, dict[int, Decoded]] = {}
    for m in messages:
        if m.sequenced:
            groups.setdefault(m.gateway, {}).setdefault(m.seq, m)
    return {gw: list(groups[gw].values()) for gw in sorted(groups)}


def latest_states(messages: Sequence[Decoded]) -> list[Decoded]:
    """The newest state message per gateway in the batch."""
    newest: dict[str, Decoded] = {}
    for m in messages:
        if not m.sequenced and (m.gateway not in newest or m.ts >= newest[m.gateway].ts):
            newest[m.gateway] = m
    return [newest[gw] for gw in sorted(newest)]
