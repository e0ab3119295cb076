"""Fakes at the bleak boundary, and only there: no BLE radio on a build machine.

`FakeAir` stands in for `bleak.BleakScanner` (the driver's scanner factory) and
`FakeGatt` for `bleak.BleakClient`. They hand the driver's callback real
`bleak.backends.device.BLEDevice` and `AdvertisementData` objects carrying real
BTHome bytes, and behave like BlueZ where it matters: passive scanning needs an
advertisement-monitor pattern and only delivers what matches it; starting can
fail (no adapter, no D-Bus); a vanished adapter simply goes quiet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from bleak.args.bluez import OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakCharacteristicNotFoundError, BleakDBusError, BleakError

from cityedge.drivers.ble.bthome import UUID as BTHOME_UUID

Callback = Callable[[BLEDevice, AdvertisementData], None]


def advertisement(
    address: str,
    *,
    service_data: dict[str, bytes] | None = None,
    bthome: bytes | None = None,
    manufacturer_data: dict[int, bytes] | None = None,
    name: str | None = None,
    rssi: int = -60,
) -> tuple[BLEDevice, AdvertisementData]:
    data = dict(service_data or {})
    if bthome is not None:
        data[BTHOME_UUID] = bthome
    device = BLEDevice(address, name, details={"path": "/org/bluez/hci0/dev_x"})
    adv = AdvertisementData(
        local_name=name,
        manufacturer_data=manufacturer_data or {},
        service_data=data,
        service_uuids=list(data),
        tx_power=None,
        rssi=rssi,
        platform_data=(),
    )
    return device, adv


def _matches(patterns: list[OrPattern], adv: AdvertisementData) -> bool:
    # Enough of BlueZ's advertisement monitor for our one pattern: a 16-bit service-data UUID.
    for pattern in patterns:
        if pattern.ad_data_type == AdvertisementDataType.SERVICE_DATA_UUID16:
            short = int.from_bytes(pattern.content_of_pattern, "little")
            if f"0000{short:04x}-0000-1000-8000-00805f9b34fb" in adv.service_data:
                return True
    return False


class FakeScanner:
    def __init__(self, air: FakeAir, callback: Callback, mode: str, bluez: dict[str, Any]):
        self.air = air
        self.callback = callback
        self.mode = mode
        self.bluez = bluez
        self.running = False

    async def start(self) -> None:
        self.air.start_attempts.append(self.mode)
        if self.air.start_failures:
            raise self.air.start_failures.pop(0)
        if self.air.unavailable is not None:
            raise self.air.unavailable
        if self.mode == "passive" and not self.air.passive_supported:
            raise BleakDBusError("org.bluez.Error.NotSupported", ["Advertisement monitors"])
        await asyncio.sleep(0)
        self.running = True

    async def stop(self) -> None:
        self.running = False


class FakeAir:
    """The airwaves around the gateway, as bleak would report them."""

    def __init__(self) -> None:
        self.scanners: list[FakeScanner] = []
        self.start_failures: list[BaseException] = []  # raised by the next starts, in order
        self.unavailable: BaseException | None = None  # raised by every start while set
        self.start_attempts: list[str] = []
        self.passive_supported = True

    def scanner_factory(
        self,
        detection_callback: Callback | None = None,
        service_uuids: list[str] | None = None,
        scanning_mode: str = "active",
        *,
        bluez: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> FakeScanner:
        bluez = dict(bluez or {})
        assert detection_callback is not None
        if scanning_mode == "passive" and not bluez.get("or_patterns"):
            raise BleakError("passive scanning mode requires bluez or_patterns")  # as bleak does
        scanner = FakeScanner(self, detection_callback, scanning_mode, bluez)
        self.scanners.append(scanner)
        return scanner

    @property
    def running(self) -> list[FakeScanner]:
        return [s for s in self.scanners if s.running]

    def broadcast(self, address: str, **kwargs: Any) -> int:
        """One advertisement on the air; returns how many scanners were handed it."""
        device, adv = advertisement(address, **kwargs)
        delivered = 0
        for scanner in self.running:
            if scanner.mode == "passive" and not _matches(scanner.bluez["or_patterns"], adv):
                continue
            scanner.callback(device, adv)
            delivered += 1
        return delivered

    def vanish(self) -> None:
        """The adapter is unplugged or BlueZ restarts: bleak is not told, it goes quiet."""
        for scanner in self.scanners:
            scanner.running = False


class FakeGattDevice:
    def __init__(self, chars: dict[str, bytes] | None = None, *, hang: bool = False) -> None:
        self.chars = chars or {}
        self.hang = hang


class FakeGatt:
    """Factory standing in for `bleak.BleakClient`; counts connections at the 'radio'."""

    def __init__(self) -> None:
        self.devices: dict[str, FakeGattDevice] = {}
        self.in_session = 0
        self.max_in_session = 0
        self.connects = 0
        self.disconnects = 0

    def __call__(
        self,
        address_or_ble_device: BLEDevice | str,
        disconnected_callback: Any = None,
        services: Any = None,
        *,
        timeout: float = 30.0,
        bluez: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> FakeClient:
        address = (
            address_or_ble_device.address
            if isinstance(address_or_ble_device, BLEDevice)
            else address_or_ble_device
        )
        return FakeClient(self, address)


class FakeClient:
    def __init__(self, gatt: FakeGatt, address: str) -> None:
        self.gatt = gatt
        self.address = address
        self.open = False

    async def connect(self, **kwargs: Any) -> None:
        gatt = self.gatt
        gatt.connects += 1
        gatt.in_session += 1
        self.open = True
        gatt.max_in_session = max(gatt.max_in_session, gatt.in_session)
        device = gatt.devices.get(self.address)
        if device is None:
            raise BleakError(f"Device with address {self.address} was not found.")
        if device.hang:
            await asyncio.Event().wait()  # a sensor that never answers
        await asyncio.sleep(0.01)

    async def read_gatt_char(self, char_specifier: str, **kwargs: Any) -> bytearray:
        device = self.gatt.devices[self.address]
        if char_specifier not in device.chars:
            raise BleakCharacteristicNotFoundError(char_specifier)
        await asyncio.sleep(0.01)  # long enough for a second session to overlap, were it allowed
        return bytearray(device.chars[char_specifier])

    async def disconnect(self) -> None:
        self.gatt.disconnects += 1
        if self.open:
            self.open = False
            self.gatt.in_session -= 1
