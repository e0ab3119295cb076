"""Derivations: the only arithmetic a device type may ask for, each a named
function with its source unit, result unit and checked parameters
(`fill_percent` from an ultrasonic distance and the bin depth, …).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

# --- derivations: the only arithmetic a device type may ask for -------------------------


@dataclass(frozen=True, slots=True)
class _Function:
    source_unit: str
    unit: str
    parameters: tuple[str, ...]
    build: Callable[[Mapping[str, float]], Callable[[float], float]]
    check: Callable[[Mapping[str, float]], str | None]


def _clamp_percent(value: float) -> float:
    return round(min(100.0, max(0.0, value)), 1)


def _fill_percent(p: Mapping[str, float]) -> Callable[[float], float]:
    depth = p["bin_depth_mm"]
    # The sensor sits in the lid looking down: an empty bin echoes off its floor.
    return lambda distance: _clamp_percent((depth - distance) / depth * 100.0)


def _battery_percent(p: Mapping[str, float]) -> Callable[[float], float]:
    empty, full = p["battery_empty_v"], p["battery_full_v"]
    return lambda volts: _clamp_percent((volts - empty) / (full - empty) * 100.0)


FUNCTIONS: dict[str, _Function] = {
    "fill_percent": _Function(
        "mm",
        "%",
        ("bin_depth_mm",),
        _fill_percent,
        lambda p: None if p["bin_depth_mm"] > 0 else "bin_depth_mm must be above 0",
    ),
    "battery_percent": _Function(
        "V",
        "%",
        ("battery_empty_v", "battery_full_v"),
        _battery_percent,
        lambda p: (
            None
            if p["battery_full_v"] > p["battery_empty_v"]
            else "battery_full_v must be above battery_empty_v"
        ),
    ),
}
