"""Energy proof: kWh from a controller's energy counter, against the lamp it replaced.

Counters reset (a controller swapped or reflashed) and wrap (a 32-bit register
at 0.01 kWh wraps at 42,949,672.95 kWh). Both show up as a value going down:
close to the wrap point it is a wrap (the counter went round), otherwise a
reset (the counter started again from zero). Either way no energy is lost or
invented: the consumption after the drop is counted from the new origin.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_WRAP_KWH = (2**32) * 0.01


def consumed_kwh(samples: Iterable[float], wrap_kwh: float = DEFAULT_WRAP_KWH) -> float:
    """kWh consumed over a series of counter readings, oldest first."""
    total = 0.0
    previous: float | None = None
    for value in samples:
        if previous is not None:
            if value >= previous:
                total += value - previous
            elif previous > wrap_kwh * 0.9:  # went round the top of the register
                total += wrap_kwh - previous + value
            else:  # reset: counting starts again at 0
                total += value
        previous = value
    return total


@dataclass(frozen=True, slots=True)
class Saving:
    device: str
    kwh: float
    baseline_kwh: float

    @property
    def percent(self) -> float:
        if self.baseline_kwh <= 0:
            return 0.0
        return 100.0 * (1.0 - self.kwh / self.baseline_kwh)


def baseline_kwh(watts: float, hours: float) -> float:
    """What the replaced lamp (e.g. 150 W sodium, on all night) would have used."""
    return watts * hours / 1000.0


def report(savings: list[Saving]) -> dict[str, object]:
    """The open-data shape of one night's report for a group."""
    kwh = sum(s.kwh for s in savings)
    base = sum(s.baseline_kwh for s in savings)
    return {
        "lampposts": [
            {
                "device": s.device,
                "kwh": round(s.kwh, 3),
                "baseline_kwh": round(s.baseline_kwh, 3),
                "saving_percent": round(s.percent, 1),
            }
            for s in savings
        ],
        "kwh": round(kwh, 3),
        "baseline_kwh": round(base, 3),
        "saving_percent": round(100.0 * (1 - kwh / base), 1) if base > 0 else 0.0,
    }
