"""Retry pacing for the radio and for maintenance reads."""

from __future__ import annotations

import random


class Backoff:
    """Exponential backoff with full jitter: gateways of a district that lost BlueZ
    together after an update must not all hammer it again in the same second."""

    def __init__(self, minimum: float, maximum: float) -> None:
        self.minimum = minimum
        self.maximum = max(minimum, maximum)
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.minimum * 2 ** min(self.attempt, 32))
        self.attempt += 1
        return random.uniform(self.minimum, ceiling)

    def reset(self) -> None:
        self.attempt = 0
