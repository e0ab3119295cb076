"""`[[drivers.onewire]]`: the thermometers of one 1-Wire bus master.

    [[drivers.onewire]]
    name = "cabinet-w1"
    bus = "/sys/bus/w1/devices"      # where the kernel lists the bus's sensors
    interval = 60                    # seconds between two readings of a sensor
    devices = [
      { name = "cabinet-07-air", sensor = "28-00000a1b2c3d" },
    ]

Errors name the key path (`drivers.onewire[0].devices[0].sensor: should be a
1-Wire id such as 28-00000a1b2c3d, got 'x'`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from cityedge.sdk.driver import DriverSection
from cityedge.sdk.tables import Field, Table, check, check_table

NAME = r"^[A-Za-z0-9_.-]+$"
SENSOR_ID = r"^[0-9a-f]{2}-[0-9a-f]{12}$"  # family code, dash, 48-bit serial (sysfs spelling)


class Thermometer(Table):
    name: str = Field(min_length=1, max_length=64, pattern=NAME)
    sensor: str = Field(min_length=1, max_length=15)

    @check("sensor")
    @classmethod
    def _sensor_id(cls, value: str) -> str:
        if not re.fullmatch(SENSOR_ID, value):
            raise ValueError(f"should be a 1-Wire id such as 28-00000a1b2c3d, got {value!r}")
        return value


class Section(DriverSection):
    bus: Path = Path("/sys/bus/w1/devices")
    interval: Annotated[float, Field(ge=1, le=86400)] = 60.0
    timeout: Annotated[float, Field(gt=0, le=30)] = 2.0  # a conversion takes 750 ms
    devices: list[Thermometer] = Field(min_length=1, max_length=64)

    @check_table
    def _unique(self) -> None:
        seen: set[str] = set()
        for device in self.devices:
            if device.name in seen:
                raise ValueError(f"two devices are named {device.name!r}")
            seen.add(device.name)
