"""A validated LoRaWAN device type: points, alarms, and the layout frames or LPP
channels its codec reads. Plain frozen data, built by `decoders` from a file
and read by `codec`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cityedge.sdk.model import Value

# --- the validated device type ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Point:
    name: str
    unit: str | None
    kind: str  # "bool" | "int" | "float", as agent.model.PointInfo


@dataclass(frozen=True, slots=True)
class DecodedPoint:
    name: str
    value: Value
    unit: str | None


@dataclass(frozen=True, slots=True)
class Alarm:
    point: str
    event: str  # dotted and stable: `bin.full`
    severity: str  # "info" | "warning" | "critical"
    at_or_above: float | None = None
    at_or_below: float | None = None
    equals: float | bool | None = None


def breached(alarm: Alarm, value: Value) -> bool:
    """Whether one value is in the alarm's range; text never is, nor is NaN."""
    if isinstance(value, str):
        return False
    if alarm.equals is not None:
        return value == alarm.equals
    if isinstance(value, bool) or math.isnan(value):
        return False  # validation keeps thresholds off flags; NaN compares false anyway
    if alarm.at_or_above is not None:
        return value >= alarm.at_or_above
    return alarm.at_or_below is not None and value <= alarm.at_or_below


@dataclass(frozen=True, slots=True)
class Bit:
    name: str
    bit: int
    width: int


@dataclass(frozen=True, slots=True)
class Field_:
    name: str
    type: str
    size: int
    scale: float
    offset: float
    unit: str | None
    emit: bool  # False: read only for its bits or a derivation
    missing: int | None  # raw value meaning "no measurement": the point is left out
    bits: tuple[Bit, ...]


@dataclass(frozen=True, slots=True)
class Derivation:
    name: str
    function: str
    source: str
    unit: str | None
    compute: Callable[[float], float]


@dataclass(frozen=True, slots=True)
class Frame:
    fports: frozenset[int] | None  # None: any application port
    fields: tuple[Field_, ...]
    derivations: tuple[Derivation, ...]

    @property
    def length(self) -> int:
        return sum(f.size for f in self.fields)


@dataclass(frozen=True, slots=True)
class DeviceType:
    name: str
    description: str
    codec: str  # "cayenne-lpp" | "layout"
    interval_s: float
    points: tuple[Point, ...]  # cayenne-lpp: only mapped channels; others appear by default name
    alarms: tuple[Alarm, ...]
    source: Path | None = None
    frames: tuple[Frame, ...] = ()  # layout
    channels: Mapping[tuple[int, int], str] | None = None  # cayenne-lpp: (channel, type) -> name
    fports: frozenset[int] | None = None  # cayenne-lpp: accepted ports, None: any
