"""The privacy gate: the one place an advertiser's address is looked at.

Every advertisement the radio hears passes through `Allowlist.admit` first thing in
the scanner callback. A listed address yields its configured sensor; any other
address yields None and the caller returns at once. An unlisted address is never
stored, logged, counted under a label or turned into a reading: at most a bare
number of such advertisements is kept, and only when `count_unknown = true`.

We count advertisements, not advertisers: counting distinct phones would mean
remembering them (even hashed), which is exactly what we do not do.
"""

from __future__ import annotations

from collections.abc import Iterable

from cityedge.drivers.ble.config import DeviceSection


class Allowlist:
    def __init__(self, devices: Iterable[DeviceSection], *, count_unknown: bool) -> None:
        self._by_address = {d.address: d for d in devices}  # config normalises to upper case
        self._count_unknown = count_unknown
        self._unknown = 0

    def admit(self, address: str) -> DeviceSection | None:
        """The configured sensor behind `address`, or None for anyone else."""
        sensor = self._by_address.get(address.upper())
        if sensor is None and self._count_unknown:
            self._unknown += 1
        return sensor

    @property
    def unknown_advertisements(self) -> int | None:
        """Advertisements from unlisted devices (None when counting is off)."""
        return self._unknown if self._count_unknown else None
