"""NMEA 0183 GPS receivers on a serial line (vehicle gateways).

Layers: `cityedge.drivers.serialline` (port, framer) → `sentence` (frame check and
decoding, pure) → `receiver` (epochs → readings and fix events, pure) →
`driver` (the port's lifetime, health). `replay` feeds a capture file into a
line, for the demo and the tests. See docs/serial.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cityedge.drivers.nmea.config import Section
from cityedge.sdk.driver import DriverEnv

if TYPE_CHECKING:
    from cityedge.drivers.nmea.driver import NmeaDriver


def build(section: Section, env: DriverEnv) -> NmeaDriver:
    """The driver of one `[[drivers.nmea]]` table."""
    # imported here so that checking a config does not load pyserial
    from cityedge.drivers.nmea.driver import NmeaDriver

    return NmeaDriver(section)


__all__ = ["Section", "build"]
