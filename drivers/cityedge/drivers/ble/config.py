"""`[[drivers.ble]]`: one Bluetooth adapter and the city's BLE sensors it may listen to.

The device list is the allowlist: an advertiser whose address is not listed here
is dropped in the scanner callback (see `drivers/ble/gate.py`, docs/privacy.md).
A bindkey is never echoed in an error message: a mistyped key is still a secret.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from cityedge.drivers.ble.bthome import POINT_NAMES
from cityedge.sdk.driver import DriverSection
from cityedge.sdk.tables import Field, Table, check, check_table

Seconds = Annotated[float, Field(gt=0, le=86400 * 31)]
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]

_MAC = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")
_HEX = re.compile(r"^[0-9a-fA-F]*$")

GattPoint = Literal["battery_level", "manufacturer", "model", "firmware", "hardware", "software"]


class GattSchedule(Table):
    """Maintenance reads over a GATT connection (Battery and Device Information services)."""

    every: Seconds = 86400.0  # a connection costs the sensor battery: daily is plenty
    points: list[GattPoint] = Field(default=["battery_level"], min_length=1)
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    retry_delay: Seconds = 30.0  # doubled (with jitter) after each failed attempt
    first_within: Seconds = 60.0  # first read at a random moment this soon after start


class DeviceSection(Table):
    """One BLE sensor of the city, by its fixed (public or static random) address."""

    name: Name
    address: str
    bindkey: str | None = None  # 32 hex digits: the sensor's BTHome AES-CCM key
    interval: Seconds = 60.0  # how often the sensor is expected to advertise
    silent_after: Annotated[int, Field(ge=1, le=10000)] = 5  # intervals without data → alarm
    # BTHome points expected (listed in the catalogue before first heard)
    points: list[str] = Field(default_factory=list)
    gatt: GattSchedule | None = None

    @check("address", before=True)
    @classmethod
    def _address(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        text = value.strip().upper().replace("-", ":")
        if not _MAC.match(text):
            raise ValueError("expected a Bluetooth address like A4:C1:38:8D:18:B2")
        return text

    @check("points")
    @classmethod
    def _points(cls, value: list[str]) -> list[str]:
        unknown = [p for p in value if p not in POINT_NAMES]
        if unknown:
            raise ValueError(
                f"unknown BTHome point(s) {', '.join(unknown)}; see docs/ble.md for the names"
            )
        return value

    @check_table
    def _bindkey(self) -> None:
        # Checked here, not as a key, so the report cannot show the (secret) value.
        key = self.bindkey
        if key is not None and (len(key) != 32 or not _HEX.match(key)):
            what = "not hexadecimal" if not _HEX.match(key) else f"{len(key)} characters"
            raise ValueError(f"bindkey: expected 32 hex digits (a 16-byte AES key), got {what}")

    @property
    def key(self) -> bytes | None:
        return bytes.fromhex(self.bindkey) if self.bindkey else None

    @property
    def mac(self) -> bytes:
        return bytes.fromhex(self.address.replace(":", ""))


class Section(DriverSection):
    """One adapter; run one `[[drivers.ble]]` per adapter."""

    adapter: str = Field(default="hci0", pattern=r"^hci[0-9]{1,3}$")
    # passive: no scan requests are sent and BlueZ only hands us BTHome frames; falls
    # back to active scanning where BlueZ lacks advertisement monitors.
    scanning: Literal["passive", "active"] = "passive"
    count_unknown: bool = False  # keep a bare count of advertisements from unlisted devices
    devices: list[DeviceSection] = Field(default_factory=list)
    start_timeout: Seconds = 15.0
    radio_silence_restart: Seconds = 300.0  # no advertisement at all for this long → restart scan
    retry_min: Seconds = 1.0  # adapter retry backoff (jittered, doubles up to retry_max)
    retry_max: Seconds = 60.0
    gatt_timeout: Seconds = 20.0  # a whole maintenance read: wait for adapter, connect, read

    @check_table
    def _unique(self) -> None:
        problems = []
        names: dict[str, int] = {}
        addresses: dict[str, int] = {}
        for i, device in enumerate(self.devices):
            if device.name in names:
                first = names[device.name]
                problems.append(
                    f"devices[{i}].name: {device.name!r} already used by devices[{first}]"
                )
            if device.address in addresses:
                problems.append(
                    f"devices[{i}].address: {device.address} already used by "
                    f"devices[{addresses[device.address]}]"
                )
            names.setdefault(device.name, i)
            addresses.setdefault(device.address, i)
        if self.retry_max < self.retry_min:
            problems.append(f"retry_max: {self.retry_max} is below retry_min {self.retry_min}")
        if problems:
            raise ValueError("; ".join(problems))
