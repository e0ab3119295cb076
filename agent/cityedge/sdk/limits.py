"""The check every driver makes before a number goes to the wire: a value
written to a numeric point must be a finite number within the point's limits.
What is wrong is said in the point's words (`dimming: 150 is above the maximum
100`), as `InvalidValue`, before any request is built.
"""

from __future__ import annotations

import math

from cityedge.sdk.model import InvalidValue, Value


def check_number(
    where: str, value: Value, minimum: float | None, maximum: float | None
) -> int | float:
    """`value` if it is a finite number in [minimum, maximum] (a bound of None: none)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise InvalidValue(f"{where}: expected a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise InvalidValue(f"{where}: {value!r} is below the minimum {minimum:g}")
    if maximum is not None and value > maximum:
        raise InvalidValue(f"{where}: {value!r} is above the maximum {maximum:g}")
    return value
