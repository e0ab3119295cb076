"""Public lighting run at the edge: programs, the controller, the energy proof.

The names are loaded on first use: the config imports `lighting.program` (the
tables) on every gateway, and must not bring astral with it (see `schedule`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cityedge.gateway.lighting.controller import LightingController, ScaledClock, SystemClock
    from cityedge.gateway.lighting.program import Lighting, load_lighting
    from cityedge.gateway.lighting.schedule import Sky, level_at

_WHERE = {
    "LightingController": "controller",
    "ScaledClock": "controller",
    "SystemClock": "controller",
    "Lighting": "program",
    "load_lighting": "program",
    "Sky": "schedule",
    "level_at": "schedule",
}

__all__ = ["Lighting", "LightingController", "ScaledClock", "Sky", "SystemClock", "level_at",
           "load_lighting"]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
