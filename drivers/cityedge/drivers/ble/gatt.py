"""Maintenance reads over GATT: battery level and device information, on demand or on a
schedule, one connection at a time per adapter.

A BLE controller juggles scanning and connections on one radio; two connection
attempts at once make BlueZ fail both more often than not. So every read takes
the adapter's lock, and the whole read (waiting for the lock, connecting,
reading, hanging up) is bounded by one timeout.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import structlog
from bleak.backends.device import BLEDevice
from bleak.exc import BleakCharacteristicNotFoundError, BleakError, BleakGATTProtocolError

from cityedge.sdk.model import DeviceRejected, DeviceUnreachable, Value

log = structlog.get_logger(__name__)


def _sig_uuid(short: int) -> str:
    return f"0000{short:04x}-0000-1000-8000-00805f9b34fb"


# point → (characteristic UUID, unit); Battery Service 0x180F, Device Information 0x180A
CHARACTERISTICS: dict[str, tuple[str, str | None]] = {
    "battery_level": (_sig_uuid(0x2A19), "%"),
    "manufacturer": (_sig_uuid(0x2A29), None),
    "model": (_sig_uuid(0x2A24), None),
    "firmware": (_sig_uuid(0x2A26), None),
    "hardware": (_sig_uuid(0x2A27), None),
    "software": (_sig_uuid(0x2A28), None),
}
GATT_POINTS = frozenset(CHARACTERISTICS)
_TEXT_MAX = 64  # DIS strings are short; a longer one is cut, not trusted to be sane


class GattClient(Protocol):
    """The part of `bleak.BleakClient` we use."""

    async def connect(self, **kwargs: Any) -> None: ...

    async def disconnect(self) -> None: ...

    async def read_gatt_char(self, char_specifier: str, **kwargs: Any) -> bytes | bytearray: ...


ClientFactory = Callable[..., GattClient]
"""Called like `bleak.BleakClient(device_or_address, timeout=…, bluez={"adapter": …})`."""


_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def adapter_lock(adapter: str) -> asyncio.Lock:
    """The lock of `adapter` in the running loop, shared by every driver using it."""
    per_loop = _locks.setdefault(asyncio.get_running_loop(), {})
    return per_loop.setdefault(adapter, asyncio.Lock())


def parse(point: str, raw: bytes | bytearray) -> Value:
    """A characteristic's bytes as the point's value; DeviceRejected if they make no sense."""
    if point == "battery_level":
        if len(raw) != 1 or raw[0] > 100:
            raise DeviceRejected(f"battery_level: expected one byte 0-100, got {bytes(raw).hex()}")
        return raw[0]
    text = bytes(raw[: _TEXT_MAX * 4]).split(b"\x00", 1)[0].decode("utf-8", errors="replace")
    return "".join(ch for ch in text if ch.isprintable()).strip()[:_TEXT_MAX]


class GattReader:
    def __init__(self, adapter: str, client_factory: ClientFactory, timeout: float) -> None:
        self.adapter = adapter
        self.timeout = timeout
        self._factory = client_factory

    async def read(
        self, device: str, target: BLEDevice | str, points: Sequence[str]
    ) -> dict[str, Value]:
        """Connect to `target`, read `points`, hang up. Raises DeviceUnreachable (retry
        later) or DeviceRejected (the sensor has no such characteristic / refused)."""
        try:
            async with asyncio.timeout(self.timeout), adapter_lock(self.adapter):
                return await self._session(target, points)
        except TimeoutError:
            raise DeviceUnreachable(f"{device}: no GATT answer within {self.timeout:g} s") from None
        except BleakCharacteristicNotFoundError as exc:
            raise DeviceRejected(f"{device}: {exc}") from None
        except BleakGATTProtocolError as exc:
            raise DeviceRejected(f"{device}: {exc}") from None
        except (BleakError, OSError, EOFError) as exc:
            raise DeviceUnreachable(f"{device}: {type(exc).__name__}: {exc}") from None

    async def _session(self, target: BLEDevice | str, points: Sequence[str]) -> dict[str, Value]:
        client = self._factory(target, timeout=self.timeout, bluez={"adapter": self.adapter})
        try:
            await client.connect()
            values: dict[str, Value] = {}
            for point in points:
                raw = await client.read_gatt_char(CHARACTERISTICS[point][0])
                values[point] = parse(point, raw)
            return values
        finally:
            await self._hang_up(client)

    async def _hang_up(self, client: GattClient) -> None:
        # Also after a failed or cancelled connect: it aborts BlueZ's pending attempt.
        try:
            await asyncio.wait_for(client.disconnect(), timeout=min(5.0, self.timeout))
        except Exception as exc:  # a failed hang-up must not hide the read's own outcome
            log.debug("ble.gatt_disconnect_failed", adapter=self.adapter, error=type(exc).__name__)
