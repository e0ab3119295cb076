"""How long to wait before the next attempt: the one backoff every part of cityedge uses.

Reopening a lost serial port, restarting a crashed task, reconnecting the
uplink, retrying the BLE radio or a GATT read, re-polling a device found down:
each waits a doubling delay from `first` up to `ceiling`. They differ only in
the jitter, which keeps a cabinet's devices (and a fleet's gateways after a
power cut) from retrying in lockstep:

* `jitter=0.2` (the default): each delay ±20 % around the doubling step;
* `jitter=0.0`: exactly the doubling step (a deterministic schedule);
* `full_jitter=True`: anywhere between `first` and the doubling step.
"""

from __future__ import annotations

import random

_MAX_DOUBLINGS = 30  # 2**30 × any sane `first` is past any ceiling; keeps the float finite


def doubling(first: float, ceiling: float, attempt: int) -> float:
    """The un-jittered delay before retry number `attempt` (0 = the first retry)."""
    step: float = first * 2 ** min(max(attempt, 0), _MAX_DOUBLINGS)
    return min(step, ceiling)


class Backoff:
    """Doubling delays from `first` up to `ceiling`, jittered (see the module doc)."""

    def __init__(
        self,
        first: float,
        ceiling: float,
        *,
        jitter: float = 0.2,
        full_jitter: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 <= first <= ceiling:
            raise ValueError(f"expected 0 <= first <= ceiling, got {first} and {ceiling}")
        self.first = first
        self.ceiling = ceiling
        self.jitter = jitter
        self.full_jitter = full_jitter
        self.attempts = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        """The delay before the next attempt (and count this one)."""
        base = doubling(self.first, self.ceiling, self.attempts)
        self.attempts += 1
        if self.full_jitter:
            return self._rng.uniform(self.first, base)
        spread = base * self.jitter
        delay: float = base + self._rng.uniform(-spread, spread) if spread else base
        return max(0.0, delay)

    def reset(self) -> None:
        """The last attempt worked: start again from `first`."""
        self.attempts = 0


def down_due(now: float, interval: float, down_polls: int, backoff_max: float) -> float:
    """When a device found unreachable `down_polls` polls in a row is polled again:
    the interval doubling with each one, up to `backoff_max` (never below the interval),
    so a dead device's timeouts do not eat its line."""
    return now + doubling(interval, max(interval, backoff_max), down_polls - 1)


def next_due(
    due: float, now: float, interval: float, *, down_polls: int = 0, backoff_max: float = 0.0
) -> float:
    """When a device polled at `now` (it was due at `due`) is due again.

    One interval after its last due time; a poll that overran skips the missed
    ticks rather than bursting to catch up. Down: `down_due`.
    """
    if down_polls:
        return down_due(now, interval, down_polls, backoff_max)
    tick = due + interval
    if tick <= now:
        tick = now + interval - (now - tick) % interval
    return tick
