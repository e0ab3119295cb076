"""Helpers of the BLE tests (also used by hil_tests): config, a running driver, an emit sink."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

from cityedge.drivers.ble.config import Section
from cityedge.drivers.ble.driver import BleDriver
from cityedge.sdk.model import Event, Reading

PLAIN = "A4:C1:38:8D:18:B2"  # a street-side thermometer, unencrypted
SEALED = "54:48:E6:8F:80:A5"  # the BTHome encryption example's sensor and key
SEALED_KEY = "231d39c1d7cc1ab1aee224cd096db932"


def section(**overrides: Any) -> Section:
    raw: dict[str, Any] = {
        "name": "ble-cabinet-12",
        "adapter": "hci0",
        "scanning": "active",
        "start_timeout": 2.0,
        "retry_min": 0.01,
        "retry_max": 0.05,
        "gatt_timeout": 1.0,
        "devices": [
            {"name": "thermo-12", "address": PLAIN, "interval": 60.0},
            {"name": "bin-12", "address": SEALED, "bindkey": SEALED_KEY, "interval": 60.0},
        ],
    }
    raw.update(overrides)
    return Section.parse(raw)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition to hold; bounded, so a broken driver fails instead of hanging."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - the conditions span many objects; polling is simplest
            await asyncio.sleep(0.005)


class Sink:
    """The agent's side of `emit`: keeps everything the driver hands over."""

    def __init__(self) -> None:
        self.items: list[Reading | Event] = []

    async def emit(self, items: Sequence[Reading | Event]) -> None:
        self.items.extend(items)

    @property
    def readings(self) -> list[Reading]:
        return [i for i in self.items if isinstance(i, Reading)]

    @property
    def events(self) -> list[Event]:
        return [i for i in self.items if isinstance(i, Event)]

    def values(self, device: str) -> dict[str, object]:
        return {r.point: r.value for r in self.readings if r.device == device}


@asynccontextmanager
async def running(driver: BleDriver) -> AsyncIterator[Sink]:
    sink = Sink()
    task = asyncio.create_task(driver.run(sink.emit))
    try:
        yield sink
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5.0)
