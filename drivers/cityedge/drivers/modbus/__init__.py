"""Modbus street equipment: lamppost controllers and energy meters over Modbus
TCP, traffic-light controllers on a cabinet's RS-485 line over Modbus RTU.

Layers: `profile` (device types as data) → `planner` (fewest read requests) →
`codec` (registers ↔ values) → `wire` (the only pymodbus user; `line` is the
serial port under it) → `driver` (with `rota` taking turns on a serial line and
`budget` saying what the line can carry). `simulator` and `cable` serve
simulated devices for the tests, the demo and the benchmarks. See docs/modbus.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cityedge.drivers.modbus.config import Section
from cityedge.sdk.driver import DriverEnv

if TYPE_CHECKING:
    from cityedge.drivers.modbus.driver import ModbusDriver


def build(section: Section, env: DriverEnv) -> ModbusDriver:
    """The driver of one `[[drivers.modbus]]` table (profiles were loaded with the config)."""
    # imported here so that checking a config does not load pymodbus
    from cityedge.drivers.modbus.driver import ModbusDriver

    return ModbusDriver(section)


__all__ = ["Section", "build"]
