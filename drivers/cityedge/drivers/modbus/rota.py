"""Whose turn it is on a shared serial bus.

One RS-485 line carries one transaction at a time, so its devices take turns.
The rota serves the device due earliest; among devices due at the same time,
the one served longest ago. A device's next due time only moves forward by
its own interval once it has been served, while a waiting device's due time
stays put, so a device polled every 100 ms cannot starve one polled every
10 s: the slow one becomes the earliest due and goes next. Dead devices are
pushed back by an exponential backoff, so their timeouts do not eat the line
either. When the line cannot keep up with every interval, each late device is
due at once and queues behind those that waited longer: round robin, the
line's whole capacity shared in turn.

Pure bookkeeping, no I/O: tests/modbus/test_rtu_rota.py runs it on a fake clock.
"""

from __future__ import annotations

from collections.abc import Iterable

from cityedge.sdk.backoff import down_due


class Rota:
    """Due times and turns of the devices sharing one bus."""

    def __init__(self, names: Iterable[str], now: float) -> None:
        listed = list(dict.fromkeys(names))
        if not listed:
            raise ValueError("a rota needs at least one device")
        self._due = dict.fromkeys(listed, now)
        # when each was last served, as a counter; listed order breaks the first ties
        self._turn = {name: i - len(listed) for i, name in enumerate(listed)}
        self._turns = 0

    def next(self) -> tuple[str, float]:
        """The device to serve next and the time it is due."""
        name = min(self._due, key=lambda n: (self._due[n], self._turn[n]))
        return name, self._due[name]

    def due(self, name: str) -> float:
        return self._due[name]

    def served(
        self,
        name: str,
        now: float,
        interval: float,
        *,
        down_polls: int = 0,
        backoff_max: float = 0.0,
    ) -> float:
        """`name` had its turn, which ended at `now`; returns when it is due again.

        Up: one interval after it was due; if that has passed already (the line
        is busier than the intervals allow), at once: it then queues behind
        every device that has waited longer. Down: `down_due` (doubling waits).
        """
        if down_polls:
            again = down_due(now, interval, down_polls, backoff_max)
        else:
            again = max(self._due[name] + interval, now)
        self._turns += 1
        self._turn[name] = self._turns
        self._due[name] = again
        return again

    def everyone_now(self, now: float) -> None:
        """Make every device due at `now` (the line came back: poll them all)."""
        for name in self._due:
            self._due[name] = min(self._due[name], now)
