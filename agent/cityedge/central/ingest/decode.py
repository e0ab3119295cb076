"""The one adapter between ingest and the command post's verifier: (topic, payload) in,
a `Decoded` message or a `Rejected` verdict out.

Signature, trust, key binding and topic checks are the verifier's. Its in-memory
sequence verdict is ignored on purpose: a message it calls a duplicate may be one whose
transaction rolled back and that came again, so ingest asks the database instead.
Its key bindings are shared through the store by `ingest/trust.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cityedge.central.verifier import GAP_EVENTS, Outcome, Verdict, Verifier
from cityedge.protocol.entries import Message, ResultEntry
from cityedge.sdk.model import Event, Reading


@dataclass(frozen=True, slots=True)
class Decoded:
    """A verified gateway message, reduced to what the store writes."""

    gateway: str
    site: str
    kind: str  # telemetry, event, result or state
    seq: int
    ts: float
    historical: bool
    key_id: str
    readings: tuple[Reading, ...] = ()
    events: tuple[Event, ...] = ()
    results: tuple[ResultEntry, ...] = ()
    state: Mapping[str, Any] | None = None
    accounted: tuple[tuple[int, int], ...] = ()  # numbers the gateway says will never come

    @property
    def sequenced(self) -> bool:
        """State messages carry no sequence number of their own."""
        return self.kind != "state"


# Refused for a reason that enrolment can cure: the envelope is kept for a replay.
KEEP_REASONS = frozenset({"unknown-key"})


@dataclass(frozen=True, slots=True)
class Rejected:
    topic: str
    reason: str
    detail: str
    payload: bytes | None = None  # kept only for KEEP_REASONS


@dataclass(frozen=True, slots=True)
class Ignored:
    """Not a gateway message (a command seen on the bus): acknowledged, not stored."""

    topic: str


Outcome_ = Decoded | Rejected | Ignored


class Decoder:
    """Wraps one `Verifier` (its key bindings and rotations carry over between messages;
    ingest keeps them in the store through `trust.SharedTrust`)."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier

    def decode(self, topic: str, payload: bytes) -> Outcome_:
        return outcome(topic, payload, self.verifier.verify(topic, payload))


def outcome(topic: str, payload: bytes, verdict: Verdict) -> Outcome_:
    """What ingest does with a verdict: store, record as rejected, or ignore."""
    if verdict.outcome is Outcome.SKIPPED or verdict.command is not None:
        return Ignored(topic)
    message = verdict.message
    if verdict.outcome is Outcome.REJECTED or message is None:
        reason = verdict.reason or "rejected"
        kept = bytes(payload) if reason in KEEP_REASONS else None
        return Rejected(topic, reason, verdict.detail, kept)
    return _decoded(message)


def _decoded(message: Message) -> Decoded:
    return Decoded(
        gateway=message.gateway,
        site=message.site,
        kind=message.kind,
        seq=message.seq,
        ts=message.ts,
        historical=message.historical,
        key_id=message.key_id,
        readings=tuple(message.readings),
        events=tuple(message.events),
        results=tuple(message.results),
        state=message.state if message.kind == "state" else None,
        accounted=tuple(_accounted(message.events)),
    )


def _accounted(events: list[Event]) -> list[tuple[int, int]]:
    ranges = []
    for event in events:
        if event.kind in GAP_EVENTS and isinstance(event.data, Mapping):
            first, last = event.data.get("first_seq"), event.data.get("last_seq")
            if type(first) is int and type(last) is int and 0 < first <= last:
                ranges.append((first, last))
    return ranges
