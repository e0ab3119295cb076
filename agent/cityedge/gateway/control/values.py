"""Text from a technician's command line made into a point value or a duration.

Both are parsed where the knowledge is: a value by the point's kind (from the
device profile), a duration by one small grammar (`90`, `90s`, `15m`, `1h30m`).
Errors say what was given and what was expected.
"""

from __future__ import annotations

import math
import re

from cityedge.sdk.model import PointInfo, Value

_TRUE = frozenset({"true", "on", "yes", "1"})
_FALSE = frozenset({"false", "off", "no", "0"})
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_TEXT = 1024


class ValueProblem(ValueError):
    """A value or duration that cannot be used; the message is for a person."""


def parse_value(point: PointInfo, raw: Value) -> Value:
    """`raw` (text from a CLI, or a JSON scalar) as a value of `point`'s kind."""
    value = _by_kind(point, raw)
    if point.choices is not None and value not in point.choices:
        shown = ", ".join(repr(c) for c in point.choices)
        raise ValueProblem(f"{point.name}: {value!r} is not one of {shown}")
    return value


def _by_kind(point: PointInfo, raw: Value) -> Value:
    kind = point.kind
    if not isinstance(raw, str):
        if isinstance(raw, float) and not math.isfinite(raw):
            raise ValueProblem(f"{point.name}: {raw} is not a number")
        if kind == "bool" and isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        return raw
    text = raw.strip()
    if kind == "text":
        if len(raw) > MAX_TEXT:
            raise ValueProblem(f"{point.name}: text longer than {MAX_TEXT} characters")
        return raw
    if kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueProblem(f"{point.name}: expected on/off (true/false, 1/0), got {raw!r}")
    if kind == "int":
        try:
            return int(text, 10)
        except ValueError:
            raise ValueProblem(f"{point.name}: expected a whole number, got {raw!r}") from None
    if kind == "float":
        try:
            number = float(text)
        except ValueError:
            raise ValueProblem(f"{point.name}: expected a number, got {raw!r}") from None
        if not math.isfinite(number):
            raise ValueProblem(f"{point.name}: expected a finite number, got {raw!r}")
        return number
    raise ValueProblem(f"{point.name}: points of kind {kind!r} cannot be written from here")


def parse_duration(text: str) -> float:
    """Seconds in `text`: `90`, `90s`, `15m`, `2h`, `1h30m`, `1d`."""
    compact = "".join(text.split()).lower()
    if not compact or len(compact) > 32:
        raise ValueProblem(f"duration {text!r}: expected e.g. 90s, 15m, 1h30m")
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(compact):
        bare = not match.group(2)
        if match.start() != position or (bare and (position or match.end() != len(compact))):
            break  # a gap, or a bare number next to other parts ("1h30": 30 what?)
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    else:
        if position == len(compact) and total > 0:
            return total
    raise ValueProblem(f"duration {text!r}: expected e.g. 90s, 15m, 1h30m (more than 0)")


def format_duration(seconds: float) -> str:
    """`1h 05m`, `3m 20s`, `12s`: for people, rounded to what matters."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"
