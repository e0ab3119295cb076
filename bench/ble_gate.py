"""How much does the BLE scanner callback cost per advertisement?

A busy street in active-scan fallback hands the callback thousands of phone
advertisements a second; the gate must make dropping them nearly free. Measured:
advertisements/s through `BleDriver._on_advertisement` for (a) strangers (dropped
at the gate), (b) a configured plain BTHome sensor, (c) a configured encrypted one,
against a baseline measured in the same run: a bare callback doing only the
allowlist dict lookup. Usage: python bench/ble_gate.py [N]
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from cityedge.drivers.ble.bthome import UUID, encode, encrypt
from cityedge.drivers.ble.config import Section
from cityedge.drivers.ble.driver import BleDriver
from cityedge.sdk.driver import DriverEnv

KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")


def adv(
    address: str, service_data: dict[str, bytes], manufacturer: dict[int, bytes]
) -> tuple[Any, ...]:
    return (
        BLEDevice(address, None, None),
        AdvertisementData(None, manufacturer, service_data, list(service_data), None, -60, ()),
    )


def rate(label: str, callback: Callable[..., Any], items: list[tuple[Any, ...]]) -> float:
    start = time.perf_counter()
    for device, data in items:
        callback(device, data)
    per_s = len(items) / (time.perf_counter() - start)
    print(f"{label:<44} {per_s:>12,.0f} adv/s")
    return per_s


async def main(n: int) -> None:
    rng = random.Random(1)
    section = Section.parse(
        {
            "name": "bench",
            "scanning": "active",
            "count_unknown": True,
            "devices": [
                {"name": "plain", "address": "A4:C1:38:8D:18:B2"},
                {"name": "sealed", "address": "54:48:E6:8F:80:A5", "bindkey": KEY.hex()},
            ],
        }
    )
    driver = BleDriver(section, DriverEnv(Path("/tmp"), Path("/tmp")))
    driver._outbound = asyncio.Queue()  # unbounded: measure the callback, not backpressure
    strangers = [
        adv(":".join(f"{b:02X}" for b in rng.randbytes(6)), {}, {0x004C: rng.randbytes(14)})
        for _ in range(n)
    ]
    plain = [
        adv(
            "A4:C1:38:8D:18:B2", {UUID: encode([(0x02, 21.5), (0x03, 50.0)], packet_id=i % 256)}, {}
        )
        for i in range(n)
    ]
    sealed = [
        adv(
            "54:48:E6:8F:80:A5",
            {
                UUID: encrypt(
                    encode([(0x11, True), (0x01, 90)]),
                    mac=bytes.fromhex("5448E68F80A5"),
                    bindkey=KEY,
                    counter=i + 1,
                )
            },
            {},
        )
        for i in range(n)
    ]
    allow = {"A4:C1:38:8D:18:B2": 1, "54:48:E6:8F:80:A5": 2}

    def bare(device: BLEDevice, data: AdvertisementData) -> None:
        allow.get(device.address.upper())

    base = rate("baseline: bare allowlist lookup", bare, strangers)
    drop = rate("strangers dropped at the gate", driver._on_advertisement, strangers)
    ok_plain = rate("configured plain BTHome → readings", driver._on_advertisement, plain)
    ok_sealed = rate("configured encrypted BTHome → readings", driver._on_advertisement, sealed)
    print(
        f"gate cost vs baseline: {base / drop:.2f}x  (plain decode {base / ok_plain:.1f}x, "
        f"encrypted {base / ok_sealed:.1f}x)"
    )
    print(
        f"unknown advertisements counted: {driver.unknown_advertisements}, "
        f"readings queued: {driver._outbound.qsize()} batches"
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
