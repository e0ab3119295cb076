"""The outbox: the promise that nothing is lost silently.

A SQLite database in WAL mode. Entries (readings, events, command results,
already encoded) are buffered in memory and committed in one transaction per
window: the commit is the moment a reading is accepted. A window is *sealed* as
it is committed: its entries are grouped by (priority, kind), cut into messages
of at most `chunk_entries` entries and `chunk_bytes` bytes, and each message
gets its sequence number and its signed bytes right there, in the same
transaction. The store therefore holds exactly the bytes that will travel, and
draining a backlog is read a row, publish it, delete it after the broker's
PUBACK: no signing, no re-encoding, no second write on the way out.

Invariants (see docs/outbox.md):
- a committed entry leaves the store only inside an acknowledged message, or by
  eviction, and every eviction is recorded as an `outbox.evicted` event with
  counts, time range and the sequence numbers dropped;
- a message is handed to the uplink only once its sequence number is on disk
  (fsync'ed), so sequence numbers never go back, not even after a power cut;
- a message is resent with the same bytes until acknowledged; the command post
  drops duplicates by (gateway, sequence).
"""

from cityedge.gateway.outbox.database import stored_messages
from cityedge.gateway.outbox.messages import (
    ALARM,
    CHUNK_BYTES,
    CHUNK_ENTRIES,
    CHUNK_SPAN,
    CLOCK_FLOOR,
    EVENT,
    MAX_BUFFERED,
    TELEMETRY,
    Entry,
    EventEncoder,
    Sealed,
    Sealer,
)
from cityedge.gateway.outbox.stats import OutboxStats
from cityedge.gateway.outbox.store import Outbox

__all__ = ["ALARM", "CHUNK_BYTES", "CHUNK_ENTRIES", "CHUNK_SPAN", "CLOCK_FLOOR", "EVENT",
           "MAX_BUFFERED", "TELEMETRY", "Entry", "EventEncoder", "Outbox", "OutboxStats",
           "Sealed", "Sealer", "stored_messages"]  # fmt: skip
