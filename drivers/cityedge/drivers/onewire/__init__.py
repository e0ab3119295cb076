"""Cabinet thermometers on a 1-Wire bus (DS18B20 and kin), read through Linux's
`w1` sysfs interface: the kernel does the bus, we read one small file a sensor.

This is also the smallest complete driver of the project, and the worked example
of docs/drivers.md: a folder with `config` (its `[[drivers.onewire]]` table),
`driver` (the long-lived task) and this `build()`. Nothing outside the folder
names it; the gateway finds it through its registry.
"""

from __future__ import annotations

from cityedge.drivers.onewire.config import Section
from cityedge.drivers.onewire.driver import OneWireDriver
from cityedge.sdk.driver import DriverEnv


def build(section: Section, env: DriverEnv) -> OneWireDriver:
    """The driver of one `[[drivers.onewire]]` table."""
    return OneWireDriver(section)


__all__ = ["Section", "build"]
