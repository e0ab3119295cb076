"""The durable queue of requests to the CMS: the agent's outbox, opened on its own
file, one request per message.

The outbox's promises hold here unchanged: a request is accepted once committed
to SQLite, leaves only when the CMS answered it, is resent until then, and goes
out in the order it was queued; when the store reaches its bound the oldest go
first and the loss is itself queued (never silent). Nothing is signed: the
"sealer" keeps the request's bytes as they are.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cityedge.gateway.outbox import EVENT, Entry, Outbox, Sealed

KIND = "talq"
MAX_AGE = 30 * 86400.0  # a CMS away for a month: its oldest reports go first


@dataclass(frozen=True, slots=True)
class Queued:
    """One request as it was queued: sent as it is, with its own request id."""

    method: str
    path: str
    body: Any
    request_id: str
    note: str | None = None  # the queue's own word (an eviction), logged and not sent


def _seal(*, kind: str, seq: int, historical: bool, entries: bytes, count: int) -> bytes:
    return entries  # one entry per message: the request itself


def _note(kind: str, data: dict[str, Any]) -> bytes:
    return json.dumps({"note": kind, "data": data}).encode()


class RequestQueue:
    def __init__(self, path: Path, max_bytes: int) -> None:
        self.outbox = Outbox.open(
            path,
            seal=_seal,
            max_bytes=max_bytes,
            max_age=MAX_AGE,
            event_encoder=_note,
            chunk_entries=1,
        )

    def put(self, method: str, path: str, body: Any) -> None:
        """Queue a request; it is kept once this returns."""
        raw = {"method": method, "path": path, "body": body, "id": str(uuid.uuid4())}
        self.outbox.add([Entry(KIND, EVENT, time.time(), json.dumps(raw).encode())])
        self.outbox.commit()

    def next(self) -> tuple[Sealed, Queued] | None:
        message = self.outbox.next_message(live_after=0, backlog=False)
        if message is None:
            return None
        raw = json.loads(message.payload)
        if "note" in raw:
            return message, Queued("", "", raw.get("data"), "", note=str(raw["note"]))
        return message, Queued(raw["method"], raw["path"], raw["body"], raw["id"])

    def done(self, message: Sealed) -> None:
        self.outbox.ack([message])
        self.outbox.commit()

    def retry_later(self) -> None:
        """The CMS did not answer: everything unanswered goes again, oldest first."""
        self.outbox.release()

    def waiting(self) -> int:
        return sum(self.outbox.stats().rows.values())

    def close(self) -> None:
        self.outbox.close()
