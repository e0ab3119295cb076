"""What goes into the outbox (`Entry`), what comes out (`Sealed`), and how a
window's entries are cut into messages (`chunk`): no SQLite here."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, cast

EventEncoder = Callable[[str, dict[str, Any]], bytes]
Group = tuple[str, int, float, float, int, bytes]  # kind, priority, first/last ts, count, entries
Row = tuple[int, str, int, bytes, int, float, float, bool]  # a `messages` row, as inserted

TELEMETRY, EVENT, ALARM = 1, 2, 3
PRIORITIES_LOW_FIRST = (TELEMETRY, EVENT, ALARM)
MAX_BUFFERED = 200_000  # entries kept in memory while the disk refuses writes
CLOCK_FLOOR = 1_577_836_800.0  # 2020-01-01: a gateway whose clock says earlier booted without RTC
CHUNK_ENTRIES = 500  # default entries per message: the uplink's default batch_max_readings
CHUNK_BYTES = 256 * 1024  # and bytes: the uplink's largest message body
# and time: entries stamped further apart go to separate messages, so that max_age
# (which evicts whole messages) is exact to a minute, and entries stamped before the
# clock was set never share a message with entries stamped after.
CHUNK_SPAN = 60.0
READ_AHEAD = 64  # messages fetched per query while draining: one in-flight window


class Sealer(Protocol):
    """Signs `count` already-encoded, concatenated entries as message `seq`
    (cityedge.protocol.sealing.message_sealer binds the gateway's key and names)."""

    def __call__(
        self, *, kind: str, seq: int, historical: bool, entries: bytes, count: int
    ) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str  # "telemetry" | "event" | "result": one topic per kind
    priority: int  # cityedge.sdk.model.Priority
    ts: float
    body: bytes
    # The fields `body` packs, when its encoder kept them (`packed_reading`): the
    # sealer takes them instead of decoding `body` again. In memory only, never stored.
    decoded: tuple[Any, ...] | None = None


class Joined(bytes):
    """A message's entries, concatenated, as the sealer receives them; `decoded`
    holds each entry's fields when every entry kept them (see `Entry.decoded`)."""

    decoded: list[tuple[Any, ...]] | None = None


class Sealed(NamedTuple):
    """A stored message: what the uplink publishes, and acknowledges back. (A named
    tuple: thousands are made per second while a backlog drains.)"""

    seq: int
    kind: str
    priority: int
    payload: bytes
    entry_count: int
    historical: bool


def default_event(kind: str, data: dict[str, Any]) -> bytes:
    import msgpack

    return bytes(msgpack.packb({"kind": kind, "data": data}))


def chunk(entries: list[Entry], max_entries: int, max_bytes: int) -> Iterator[Group]:
    """Group a window's entries by (priority, kind), in order of arrival, and cut
    each group at the message limits: (kind, priority, first_ts, last_ts, count,
    concatenated bodies)."""
    groups: dict[tuple[int, str], list[Entry]] = {}
    for e in entries:
        groups.setdefault((e.priority, e.kind), []).append(e)
    for (priority, kind), group in groups.items():
        start = 0
        while start < len(group):
            end, size = start, 0
            low = high = group[start].ts
            limit = min(len(group), start + max_entries)
            # once per entry committed: comparisons, not min()/max() calls
            while end < limit:
                e = group[end]
                ts = e.ts
                size += len(e.body)
                lower = ts if ts < low else low
                higher = ts if ts > high else high
                if end > start and (size > max_bytes or higher - lower > CHUNK_SPAN):
                    break
                low, high = lower, higher
                end += 1
            part = group[start:end]
            yield kind, priority, low, high, len(part), _joined(part)
            start = end


def _joined(part: list[Entry]) -> bytes:
    body = b"".join(e.body for e in part)
    decoded = [e.decoded for e in part]
    if None in decoded:
        return body
    joined = Joined(body)
    joined.decoded = cast(list[tuple[Any, ...]], decoded)
    return joined
