"""Modbus street equipment: lamppost controllers and energy meters over Modbus
TCP, traffic-light controllers on a cabinet's RS-485 line over Modbus RTU.

Layers: `profile` (device types as data) → `planner` (fewest read requests) →
`codec` (registers ↔ values) → a link, the only pymodbus users: `tcp`, or
`rtu` on the shared serial port (`cityedge.drivers.serialline.port`), both
built on `link` and raising `errors` → `driver` (with `buses` keeping each bus
and the serial line's health, `rota` taking turns on a serial line and
`budget` saying what the line can carry). Simulated devices and their servers
are in `cityedge.street` (`modbus`, `modbus_devices`, `modbus_server`,
`rs485`). See docs/modbus.md.
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
