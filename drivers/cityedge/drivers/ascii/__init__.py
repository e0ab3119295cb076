"""ASCII request/response devices on a serial line (information panels, bollards…).

Layers: `cityedge.drivers.serialline` (port, framer) → `profile` (device types as data:
requests, answer regexes, points) → `points` (text ↔ values, write checks) →
`reply` (an answer line → values, pure) → `driver` (polling, writes, health).
`simulator` is a street information panel speaking the shipped profile on a
pseudo-terminal, for the tests and the demo. See docs/serial.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cityedge.drivers.ascii.config import Section
from cityedge.sdk.driver import DriverEnv

if TYPE_CHECKING:
    from cityedge.drivers.ascii.driver import AsciiDriver


def build(section: Section, env: DriverEnv) -> AsciiDriver:
    """The driver of one `[[drivers.ascii]]` table (profiles were loaded with the config)."""
    # imported here so that checking a config does not load pyserial
    from cityedge.drivers.ascii.driver import AsciiDriver

    return AsciiDriver(section)


__all__ = ["Section", "build"]
