"""A point of an ASCII device: how its text becomes a value, and a value text.

Reads convert what a reply's regex group captured (`"23.5"`) into the point's
type, then apply `value = raw × scale + offset`. Writes check the value first
— type, range, length, charset, choices — and raise `InvalidValue` naming the
point and the rule, so nothing bad ever reaches the wire; then they invert the
scaling and hand the template its `{value}`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum

from cityedge.sdk.limits import check_number
from cityedge.sdk.model import InvalidValue, PointAccess, PointInfo, Value

_INT = re.compile(r"[+-]?\d{1,18}")
_FLOAT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,3})?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class PointType(StrEnum):
    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    TEXT = "text"


class DecodeError(ValueError):
    """A captured text does not convert to the point's type."""


@dataclass(frozen=True, slots=True)
class Point:
    name: str
    type: PointType
    read: str  # the request whose reply carries it
    group: str  # the named group of that reply's regex
    unit: str | None = None
    access: PointAccess = PointAccess.READ
    write: str | None = None  # the request template that sets it, with {value}
    write_expect: re.Pattern[str] | None = None  # a good answer to the write
    scale: float = 1.0
    offset: float = 0.0
    minimum: float | None = None
    maximum: float | None = None
    max_length: int = 64
    pattern: re.Pattern[str] | None = None  # text a write may carry
    choices: tuple[str, ...] | None = None
    on: str = "1"  # bool as text
    off: str = "0"
    deadband: float | None = None
    description: str = ""

    @property
    def writable(self) -> bool:
        return self.access is PointAccess.READ_WRITE

    @property
    def scaled(self) -> bool:
        return self.scale != 1.0 or self.offset != 0.0

    def info(self) -> PointInfo:
        kind = "float" if self.type is PointType.INT and self.scaled else str(self.type)
        return PointInfo(
            name=self.name,
            kind=kind,
            unit=self.unit,
            access=self.access,
            minimum=self.minimum,
            maximum=self.maximum,
            choices=self.choices,
            deadband=self.deadband,
        )

    # --- text → value ---------------------------------------------------------------

    def decode(self, text: str) -> Value:
        match self.type:
            case PointType.TEXT:
                return text
            case PointType.BOOL:
                if text == self.on:
                    return True
                if text == self.off:
                    return False
                raise DecodeError(f"{self.name}: {_short(text)} is neither {self.on!r} "
                                  f"nor {self.off!r}")  # fmt: skip
            case PointType.INT:
                if not _INT.fullmatch(text):
                    raise DecodeError(f"{self.name}: {_short(text)} is not an integer")
                raw: float = int(text)
            case PointType.FLOAT:
                if not _FLOAT.fullmatch(text):
                    raise DecodeError(f"{self.name}: {_short(text)} is not a number")
                raw = float(text)
                if not math.isfinite(raw):
                    raise DecodeError(f"{self.name}: {_short(text)} is not a finite number")
        if not self.scaled:
            return raw
        return round(raw * self.scale + self.offset, 10)  # drop binary noise: 235 × 0.1

    # --- value → what the template gets ------------------------------------------------

    def encode(self, value: Value) -> int | float | str:
        """Check `value` for this point; the wire form for the template's `{value}`."""
        where = self.name
        match self.type:
            case PointType.BOOL:
                if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
                    return self.on if value else self.off
                raise InvalidValue(f"{where}: expected true or false, got {value!r}")
            case PointType.TEXT:
                return self._check_text(value)
        value = check_number(where, value, self.minimum, self.maximum)
        raw = (value - self.offset) / self.scale
        if self.type is PointType.FLOAT:
            return raw
        if not self.scaled and raw != int(raw):
            raise InvalidValue(f"{where}: expected a whole number, got {value!r}")
        return round(raw)

    def _check_text(self, value: Value) -> str:
        where = self.name
        if not isinstance(value, str):
            raise InvalidValue(f"{where}: expected text, got {value!r}")
        if len(value) > self.max_length:
            raise InvalidValue(f"{where}: {len(value)} characters, at most {self.max_length}")
        bad = _CONTROL.search(value)
        if bad:  # never: a line break would end the request early and start another
            raise InvalidValue(f"{where}: control character {bad.group()!r} at "
                               f"position {bad.start()}")  # fmt: skip
        if self.choices is not None and value not in self.choices:
            raise InvalidValue(f"{where}: {value!r} is not one of {', '.join(self.choices)}")
        if self.pattern is not None and not self.pattern.fullmatch(value):
            offending = next((c for c in value if not self.pattern.fullmatch(c)), None)
            hint = f" (e.g. {offending!r})" if offending is not None else ""
            raise InvalidValue(f"{where}: characters outside the allowed set "
                               f"{self.pattern.pattern}{hint}")  # fmt: skip
        return value


def _short(text: str, limit: int = 32) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")
