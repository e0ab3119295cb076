"""The `Driver` of one `[[drivers.onewire]]` table: every `interval`, read each
thermometer's `w1_slave` file and emit its temperature.

The kernel's file holds two lines: the scratchpad bytes with the CRC verdict
(`... crc=5e YES`), then the same bytes with the temperature in millidegrees
(`... t=23125`). A `NO` means the bus garbled the transfer; 85 °C exactly is
the power-on value of a sensor that never converted. Both are failures to
count, not readings to send.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from pathlib import Path

import structlog

from cityedge.drivers.onewire.config import Section, Thermometer
from cityedge.sdk.model import (
    DeviceError,
    DeviceHealth,
    DeviceInfo,
    DeviceState,
    DeviceUnreachable,
    Emit,
    PointAccess,
    PointInfo,
    PointNotWritable,
    Reading,
    UnknownDevice,
    UnknownPoint,
    Value,
    now_wall,
)

log = structlog.get_logger(__name__)

POINT = PointInfo("temperature", "float", unit="°C", access=PointAccess.READ, minimum=-55,
                  maximum=125)  # fmt: skip
POWER_ON_VALUE = 85000  # millidegrees: the reset value of a sensor that did not convert
_TEMPERATURE = re.compile(r"t=(-?\d+)\s*$")


class SensorFault(DeviceUnreachable):
    """The sensor answered nothing usable; `reason` is the health counter it goes to."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def parse_w1_slave(text: str) -> float:
    """°C from the kernel's `w1_slave` text; `SensorFault` when it holds no reading."""
    lines = text.strip().splitlines()
    if len(lines) != 2 or not lines[0].rstrip().endswith(("YES", "NO")):
        raise SensorFault("garbled", f"unexpected w1_slave content: {text[:60]!r}")
    if lines[0].rstrip().endswith("NO"):
        raise SensorFault("crc", "CRC check failed on the bus")
    found = _TEMPERATURE.search(lines[1])
    if found is None:
        raise SensorFault("garbled", f"no t= value in {lines[1][:60]!r}")
    milli = int(found.group(1))
    if milli == POWER_ON_VALUE:
        raise SensorFault("not-converted", "power-on value 85 °C: the sensor did not convert")
    return milli / 1000


class OneWireDriver:
    """One bus master's thermometers; a sensor's failure touches only its own health."""

    def __init__(self, section: Section) -> None:
        self.name = section.name
        self._section = section
        self._devices: dict[str, Thermometer] = {d.name: d for d in section.devices}
        self._health = {d.name: DeviceHealth(d.name, section.name) for d in section.devices}

    async def run(self, emit: Emit) -> None:
        while True:
            started = time.monotonic()
            readings = [r for d in self._devices.values() if (r := await self._poll(d)) is not None]
            if readings:
                await emit(readings)
            await asyncio.sleep(max(0.0, self._section.interval - (time.monotonic() - started)))

    async def read(self, device: str, points: Sequence[str] | None = None) -> list[Reading]:
        thermometer = self._device(device)
        for point in points or ():
            if point != POINT.name:
                raise UnknownPoint(f"{device} has no point {point!r} (it has: temperature)")
        return [await self._read(thermometer)]

    async def write(self, device: str, point: str, value: Value) -> None:
        self._device(device)
        raise PointNotWritable(f"{device}.{point} is a thermometer reading: read-only")

    def health(self) -> list[DeviceHealth]:
        return list(self._health.values())

    def catalogue(self) -> dict[str, DeviceInfo]:
        return {
            name: DeviceInfo(name, "cabinet-thermometer", self.name, {POINT.name: POINT})
            for name in self._devices
        }

    # --- reading ------------------------------------------------------------------

    def _device(self, name: str) -> Thermometer:
        try:
            return self._devices[name]
        except KeyError:
            raise UnknownDevice(f"{self.name} has no device {name!r}") from None

    def _path(self, device: Thermometer) -> Path:
        return self._section.bus / device.sensor / "w1_slave"

    async def _read(self, device: Thermometer) -> Reading:
        health = self._health[device.name]
        health.requests += 1
        started = time.monotonic()
        try:
            # sysfs blocks for the conversion (~750 ms): off the event loop
            text = await asyncio.wait_for(
                asyncio.to_thread(self._path(device).read_text), self._section.timeout
            )
            value = parse_w1_slave(text)
        except (OSError, TimeoutError, SensorFault) as err:
            self._failed(device, err)
            raise DeviceUnreachable(f"{device.name}: {_describe(err)}") from None
        now = now_wall()
        if health.state is not DeviceState.UP:
            log.info("onewire.sensor_up", device=device.name, sensor=device.sensor)
            health.state, health.since, health.detail = DeviceState.UP, now, None
        health.last_seen = now
        health.latency_ms = (time.monotonic() - started) * 1000
        return Reading(device.name, POINT.name, value, now, POINT.unit)

    async def _poll(self, device: Thermometer) -> Reading | None:
        try:
            return await self._read(device)
        except DeviceError:
            return None  # counted in its health; the next sensor still gets its turn

    def _failed(self, device: Thermometer, err: BaseException) -> None:
        health = self._health[device.name]
        reason = err.reason if isinstance(err, SensorFault) else (
            "timeout" if isinstance(err, TimeoutError) else "missing")  # fmt: skip
        health.count_error(reason)
        if health.state is not DeviceState.DOWN:  # loud once an episode, counted always
            log.warning("onewire.sensor_down", device=device.name, sensor=device.sensor,
                        reason=reason, detail=_describe(err))  # fmt: skip
            health.state, health.since = DeviceState.DOWN, now_wall()
        health.detail = _describe(err)


def _describe(err: BaseException) -> str:
    if isinstance(err, FileNotFoundError):
        return f"sensor not on the bus ({err.filename} does not exist)"
    if isinstance(err, TimeoutError):
        return "no answer in time"
    return str(err) or type(err).__name__
