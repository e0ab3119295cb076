"""The BLE driver on a real Bluetooth adapter, through real bleak, BlueZ and D-Bus.

Skips unless the environment names the hardware (docs/ble.md):

  CITYEDGE_BLE_ADAPTER=hci0           the adapter to scan with (required to run)
  CITYEDGE_BLE_DEVICE=A4:C1:38:8D:18:B2[,<32 hex bindkey>]
                                      a BTHome sensor in range that must be heard
  CITYEDGE_BLE_GATT=1                 also read its battery level over GATT
  CITYEDGE_BLE_SCANNING=passive       or "active"
  CITYEDGE_BLE_SECONDS=60             how long to wait for the sensor
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from cityedge.drivers.ble.config import Section
from cityedge.drivers.ble.driver import BleDriver
from cityedge.sdk.driver import DriverEnv
from cityedge.sdk.model import DeviceState
from tests.ble.support import running, until

ADAPTER = os.environ.get("CITYEDGE_BLE_ADAPTER", "")
DEVICE = os.environ.get("CITYEDGE_BLE_DEVICE", "")
GATT = os.environ.get("CITYEDGE_BLE_GATT", "") == "1"
SCANNING = os.environ.get("CITYEDGE_BLE_SCANNING", "passive")
SECONDS = float(os.environ.get("CITYEDGE_BLE_SECONDS", "60"))

pytestmark = [
    pytest.mark.hardware,
    pytest.mark.skipif(not ADAPTER, reason="set CITYEDGE_BLE_ADAPTER=hci0 to use a real adapter"),
]


def hil_section() -> Section:
    devices: list[dict[str, Any]] = []
    if DEVICE:
        address, _, key = DEVICE.partition(",")
        device: dict[str, Any] = {"name": "hil-sensor", "address": address, "interval": SECONDS}
        if key:
            device["bindkey"] = key
        devices.append(device)
    return Section.parse(
        {
            "name": "hil-ble",
            "adapter": ADAPTER,
            "scanning": SCANNING,
            "count_unknown": True,
            "devices": devices,
            "gatt_timeout": 30.0,
        }
    )


async def test_real_adapter(tmp_path: Path) -> None:
    driver = BleDriver(hil_section(), DriverEnv(state_dir=tmp_path, config_dir=tmp_path))
    adapter_name = f"hil-ble:{ADAPTER}"

    def adapter() -> Any:
        return next(h for h in driver.health() if h.device == adapter_name)

    async with running(driver) as sink:
        try:
            await until(lambda: adapter().state is DeviceState.UP, timeout=30)
        except TimeoutError:
            pytest.fail(f"adapter {ADAPTER} did not start scanning: {adapter().detail}")
        if not DEVICE:
            await asyncio.sleep(min(SECONDS, 10))
        else:
            try:
                await until(lambda: bool(sink.values("hil-sensor")), timeout=SECONDS)
            except TimeoutError:
                sensor = next(h for h in driver.health() if h.device == "hil-sensor")
                pytest.fail(f"nothing decoded from {DEVICE.split(',')[0]} in {SECONDS:g} s: "
                            f"{sensor.detail} {sensor.errors}")  # fmt: skip
            print("heard:", sink.values("hil-sensor"))
            if GATT:
                readings = await driver.read("hil-sensor", ["battery_level"])
                assert 0 <= int(readings[0].value) <= 100
                print("battery over GATT:", readings[0].value, "%")
    print("adapter:", adapter().detail)
    assert driver.unknown_advertisements is not None  # counted, nothing else kept
