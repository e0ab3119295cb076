"""Serial lines for the drivers that speak text over RS-232/RS-485/USB adapters.

Not a driver itself — the NMEA, ASCII and Modbus RTU drivers share it (its
`config.Section` only turns a `[[drivers.serialline]]` table into a clear
config error).

Layers, as everywhere in `drivers/`: `port` (the one pyserial port read and
written from asyncio, loss detected, one `PortError`) → a framer on top:
`line` (bytes → bounded lines by `framer`, for NMEA and ASCII) or Modbus RTU's
frame timing and CRC (`cityedge.drivers.modbus.rtu`) → the driver's codec.
`settings` holds the config keys every serial section has. Health and reopen
pacing are the SDK's (`cityedge.sdk.health`, `cityedge.sdk.backoff`); the
virtual cable for simulators, tests and the demo is `cityedge.street.ptypair`.
See docs/serial.md.

Import from the modules (`cityedge.drivers.serialline.port`, …): this package imports
nothing itself, so that validating a config (`settings`) does not load pyserial.
"""

from __future__ import annotations
