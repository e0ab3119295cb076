"""`device.bad_answer`: a device that answers, but badly — an exception response,
a reply of the wrong length or function, garbage, another transaction's id, a
value that does not decode. Its health shows DEGRADED and counts each one; this
tells the command post too, without one event per poll:

* raised (active) once per fault of an episode — the first `exception-2`, the
  first `decode` — with the fault's reason and detail;
* cleared once the device has answered `CLEAR_AFTER` polls in a row in full, so a
  device that fails every other poll stays one raised event, not a stream.

A device that does not answer at all is `device.unreachable` instead
(`sdk.health`): polls without an answer neither raise nor clear this one.
"""

from __future__ import annotations

from collections.abc import Mapping

from cityedge.sdk.model import Event, Severity, now_wall

BAD_ANSWER_EVENT = "device.bad_answer"
CLEAR_AFTER = 3  # polls answered in full before the event clears


class BadAnswers:
    """One device's bad-answer episode."""

    def __init__(self, device: str, driver: str) -> None:
        self.device = device
        self.driver = driver
        self.faults: dict[str, str] = {}  # reason → first detail, this episode
        self._good = 0  # polls answered in full since the last bad answer

    def after_poll(self, faults: Mapping[str, str], *, answered: bool) -> list[Event]:
        """The events of one poll: `faults` maps the reason of each bad answer it got
        to its detail; `answered` says every request of the poll was answered."""
        now = now_wall()
        if faults:
            self._good = 0
            new = {r: d for r, d in faults.items() if r not in self.faults}
            self.faults.update(new)
            return [
                Event(BAD_ANSWER_EVENT, self.device, now, Severity.WARNING, active=True,
                      data={"driver": self.driver, "reason": reason, "detail": detail})
                for reason, detail in new.items()
            ]  # fmt: skip
        if not self.faults or not answered:
            return []
        self._good += 1
        if self._good < CLEAR_AFTER:
            return []
        reasons, self.faults, self._good = sorted(self.faults), {}, 0
        return [
            Event(BAD_ANSWER_EVENT, self.device, now, Severity.WARNING, active=False,
                  data={"driver": self.driver, "reasons": reasons})
        ]  # fmt: skip
