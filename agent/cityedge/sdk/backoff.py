"""How long to wait before the next attempt to reopen a lost port."""

from __future__ import annotations

import random


class Backoff:
    """Doubling delays from `first` up to `ceiling`, each jittered by ±`jitter`.

    Jitter keeps a cabinet's devices (and a fleet's gateways after a power cut)
    from retrying in lockstep.
    """

    def __init__(
        self,
        first: float,
        ceiling: float,
        *,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < first <= ceiling:
            raise ValueError(f"expected 0 < first <= ceiling, got {first} and {ceiling}")
        self.first = first
        self.ceiling = ceiling
        self.jitter = jitter
        self.attempts = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        """The delay before the next attempt (and count this one)."""
        base = min(self.first * 2 ** min(self.attempts, 30), self.ceiling)
        self.attempts += 1
        spread = base * self.jitter
        delay: float = base + self._rng.uniform(-spread, spread)
        return max(0.0, delay)

    def reset(self) -> None:
        self.attempts = 0
