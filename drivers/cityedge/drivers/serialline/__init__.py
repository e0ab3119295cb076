"""Serial lines for the drivers that speak text over RS-232/RS-485/USB adapters.

Not a driver itself — the NMEA and ASCII drivers share it (its `config.Section`
only turns a `[[drivers.serialline]]` table into a clear config error).

Layers, as everywhere in `drivers/`: `port` (a pyserial port read and written
from asyncio, loss detected) → `framer` (bytes → bounded lines) → the driver's
codec. `settings` holds the config keys every serial section has, `health` the
log-once discipline, `backoff` the reopen pacing, and `ptypair` a virtual
cable (pseudo-terminal) for simulators, tests and the demo.
See docs/serial.md.

Import from the modules (`cityedge.drivers.serialline.port`, …): this package imports
nothing itself, so that validating a config (`settings`) does not load pyserial.
"""

from __future__ import annotations
