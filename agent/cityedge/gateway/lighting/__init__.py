"""Public lighting run at the edge: programs, the controller, the energy proof."""

from cityedge.gateway.lighting.controller import LightingController, ScaledClock, SystemClock
from cityedge.gateway.lighting.program import Lighting, Sky, level_at, load_lighting

__all__ = ["Lighting", "LightingController", "ScaledClock", "Sky", "SystemClock", "level_at",
           "load_lighting"]  # fmt: skip
