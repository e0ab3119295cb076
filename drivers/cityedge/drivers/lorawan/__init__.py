"""LoRaWAN sensors heard through the cabinet's Semtech packet forwarder (docs/lorawan.md).

Layers: `semtech` (GWMP datagrams, the UDP listener) → `driver.Antennas` (one
frame heard by several antennas) → `uplinks` (session, counter, MIC,
decryption) using `frames`, `keyring`, `fcnt` → `codec` (payload → readings)
by a `devicetype` loaded by `decoders` (device types as data, config/lorawan/;
their vocabulary in `encodings` and `derivations`). The simulated packet
forwarder is `cityedge.street.lorawan`, out of the product.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cityedge.drivers.lorawan.config import Section
from cityedge.sdk.driver import DriverEnv

if TYPE_CHECKING:
    from cityedge.drivers.lorawan.driver import LoRaWANDriver


def build(section: Section, env: DriverEnv) -> LoRaWANDriver:
    """The driver of one `[[drivers.lorawan]]` table."""
    from cityedge.drivers.lorawan.driver import LoRaWANDriver

    return LoRaWANDriver(section, env)


__all__ = ["Section", "build"]
