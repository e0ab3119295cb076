"""BLE sensors (BTHome v2 advertisements, GATT maintenance reads) through bleak.

Only the addresses listed in the config are ever looked at; see docs/ble.md and
docs/privacy.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cityedge.sdk.driver import DriverEnv

if TYPE_CHECKING:
    from cityedge.drivers.ble.config import Section
    from cityedge.drivers.ble.driver import BleDriver


def build(section: Section, env: DriverEnv) -> BleDriver:
    # Imported here so that validating a config does not load bleak and D-Bus.
    from cityedge.drivers.ble.driver import BleDriver

    return BleDriver(section, env)
