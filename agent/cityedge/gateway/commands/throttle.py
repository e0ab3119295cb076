"""Refusals an outsider can provoke at will (garbage, forgeries, replays) are
answered within a budget and reported as `security.<code>` events — the event
kind is always the result code the refusals were answered with — at most one
per (code, reason) per window, each counting what happened since the previous
one. `data.reason` is the precise reason (`revoked-key` for an `unknown-key`
answer, `stale-version` for a `denied` trust update, else the code itself)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from cityedge.sdk.model import Event, Severity


@dataclass(slots=True)
class _Tally:
    last_event: float = -math.inf
    unreported: int = 0  # occurrences since the last event
    unanswered: int = 0  # of those, how many got no result
    detail: str = ""
    key_id: str | None = None


@dataclass(slots=True)
class _Budget:
    start: float = -math.inf
    answers: int = 0  # results sent in the current window


class SecurityThrottle:
    """One `<prefix>.<code>` event per (code, reason) per `window` seconds, and at most
    `answers` results per (code, reason) per window: a flood of bad commands costs a
    verification each, not a result, an event and an fsync each. Codes and reasons
    are closed sets, so the tables are bounded too."""

    def __init__(self, window: float = 60.0, answers: int = 10, prefix: str = "security") -> None:
        self.window = window
        self.prefix = prefix  # events are `<prefix>.<code>`
        self.answers = answers
        self._tally: dict[tuple[str, str], _Tally] = {}
        self._budget: dict[tuple[str, str], _Budget] = {}
        self.counts: dict[str, int] = {}  # every occurrence, by code, since start
        self.suppressed_results = 0

    def note(
        self,
        code: str,
        now: float,
        detail: str,
        key_id: str | None,
        *,
        reason: str | None = None,
        answer: bool | None = None,
    ) -> tuple[bool, Event | None]:
        """Count one occurrence; (send a result?, the event to send now or None).
        `answer`: True for refusals that are always answered (verified and fresh),
        False for those never answered (a copy of bytes already answered), None to
        answer within the budget."""
        key = (code, reason or code)
        tally = self._tally.setdefault(key, _Tally())
        self.counts[code] = self.counts.get(code, 0) + 1
        tally.unreported += 1
        tally.detail, tally.key_id = detail, key_id
        if answer is None:
            budget = self._budget.setdefault(key, _Budget())
            if now - budget.start >= self.window:
                budget.start, budget.answers = now, 0
            answer = budget.answers < self.answers
            budget.answers += answer
        if not answer:
            tally.unanswered += 1
            self.suppressed_results += 1
        due = now - tally.last_event >= self.window
        return answer, self._report(code, reason or code, tally, now) if due else None

    def due(self, now: float, *, everything: bool = False) -> list[Event]:
        """Summaries of occurrences not reported yet whose window is over (all of
        them with `everything`, when the agent stops)."""
        return [
            self._report(code, reason, tally, now)
            for (code, reason), tally in sorted(self._tally.items())
            if tally.unreported and (everything or now - tally.last_event >= self.window)
        ]

    def _report(self, code: str, reason: str, tally: _Tally, now: float) -> Event:
        data = {
            "code": code, "reason": reason, "count": tally.unreported,
            "unanswered": tally.unanswered, "window_s": self.window,
            "last_detail": tally.detail[:200], "key_id": tally.key_id,
        }  # fmt: skip
        tally.last_event, tally.unreported, tally.unanswered = now, 0, 0
        return Event(f"{self.prefix}.{code}", "commands", now, Severity.WARNING, None, data)
