"""Refusals an outsider can provoke at will (garbage, forgeries, replays) are
answered within a budget and reported as `security.<kind>` events, at most one
per kind per window, each counting what happened since the previous one."""

from __future__ import annotations

import math
from dataclasses import dataclass

from cityedge.sdk.model import Event, Severity


@dataclass(slots=True)
class _Tally:
    last_event: float = -math.inf
    unreported: int = 0  # occurrences since the last event
    unanswered: int = 0  # of those, how many got no result
    budget_start: float = -math.inf
    answers: int = 0  # results sent in the current budget window
    detail: str = ""
    key_id: str | None = None


class SecurityThrottle:
    """One `security.<kind>` event per kind per `window` seconds, and at most `answers`
    results per kind per window: a flood of bad commands costs a verification each,
    not a result, an event and an fsync each. Kinds are a closed set (reasons and
    result codes), so the table is bounded too."""

    def __init__(self, window: float = 60.0, answers: int = 10, prefix: str = "security") -> None:
        self.window = window
        self.prefix = prefix  # events are `<prefix>.<kind>`
        self.answers = answers
        self._tally: dict[str, _Tally] = {}
        self.counts: dict[str, int] = {}  # every occurrence, by kind, since start
        self.suppressed_results = 0

    def note(
        self, kind: str, now: float, detail: str, key_id: str | None, *, answer: bool = False
    ) -> tuple[bool, Event | None]:
        """Count one occurrence; (send a result?, the event to send now or None).
        `answer=True` for refusals that are always answered (authenticated and fresh)."""
        tally = self._tally.setdefault(kind, _Tally())
        self.counts[kind] = self.counts.get(kind, 0) + 1
        tally.unreported += 1
        tally.detail, tally.key_id = detail, key_id
        if now - tally.budget_start >= self.window:
            tally.budget_start, tally.answers = now, 0
        if not answer:
            answer = tally.answers < self.answers
            tally.answers += answer
        if not answer:
            tally.unanswered += 1
            self.suppressed_results += 1
        event = self._report(kind, tally, now) if now - tally.last_event >= self.window else None
        return answer, event

    def due(self, now: float, *, everything: bool = False) -> list[Event]:
        """Summaries of occurrences not reported yet whose window is over (all of
        them with `everything`, when the agent stops)."""
        return [
            self._report(kind, tally, now)
            for kind, tally in sorted(self._tally.items())
            if tally.unreported and (everything or now - tally.last_event >= self.window)
        ]

    def _report(self, kind: str, tally: _Tally, now: float) -> Event:
        data = {
            "reason": kind, "count": tally.unreported, "unanswered": tally.unanswered,
            "window_s": self.window, "last_detail": tally.detail[:200], "key_id": tally.key_id,
        }  # fmt: skip
        tally.last_event, tally.unreported, tally.unanswered = now, 0, 0
        return Event(f"{self.prefix}.{kind}", "commands", now, Severity.WARNING, None, data)
