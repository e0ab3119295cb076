"""The BLE driver: listens for the city's BTHome sensors, reads their batteries now and
then, and keeps everyone else's phone out of the gateway.

Tasks under `run`: the radio (scanner life, adapter loss), the silence watch
(alarms for sensors that stopped talking), one maintenance task per sensor with
a GATT schedule, and delivery (the bleak callback cannot await, so it queues
and delivery awaits `emit`). The scanner callback is where the privacy gate
sits: see `_on_advertisement`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Sequence
from typing import Any

import structlog
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from cityedge.drivers.ble.bthome import UUID as BTHOME_UUID
from cityedge.drivers.ble.bthome import BTHomeError, decode, point_type
from cityedge.drivers.ble.config import Section
from cityedge.drivers.ble.gate import Allowlist
from cityedge.drivers.ble.gatt import CHARACTERISTICS, GATT_POINTS, ClientFactory, GattReader
from cityedge.drivers.ble.radio import Radio, ScannerFactory
from cityedge.drivers.ble.sensor import Sensor, point_info
from cityedge.sdk.backoff import Backoff
from cityedge.sdk.driver import DriverEnv
from cityedge.sdk.model import (
    DeviceError,
    DeviceHealth,
    DeviceInfo,
    DeviceRejected,
    DeviceState,
    DeviceUnreachable,
    Emit,
    Event,
    PointInfo,
    PointNotWritable,
    Reading,
    Severity,
    UnknownDevice,
    UnknownPoint,
    Value,
    now_wall,
)

log = structlog.get_logger(__name__)

SILENT = "ble.sensor_silent"
ADAPTER_DOWN = "ble.adapter_down"
QUEUE_BATCHES = 10_000  # between the callback and emit; beyond it frames are dropped, counted
RSSI = PointInfo("rssi", "int", "dBm", deadband=5.0)


class BleDriver:
    def __init__(
        self,
        section: Section,
        env: DriverEnv,
        *,
        scanner_factory: ScannerFactory | None = None,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self.name = section.name
        self.section = section
        self._gate = Allowlist(section.devices, count_unknown=section.count_unknown)
        self._sensors: dict[str, Sensor] = {}
        for device in section.devices:
            sensor = Sensor(device, DeviceHealth(device.name, section.name))
            sensor.points = {p: point_info(p) for p in device.points}
            self._sensors[device.name] = sensor
        self._radio = Radio(
            adapter=section.adapter,
            mode=section.scanning,
            scanner_factory=scanner_factory or BleakScanner,
            callback=self._on_advertisement,
            start_timeout=section.start_timeout,
            silence_restart=section.radio_silence_restart,
            retry_min=section.retry_min,
            retry_max=section.retry_max,
            on_change=self._adapter_changed,
        )
        self._gatt = GattReader(
            section.adapter, client_factory or BleakClient, section.gatt_timeout
        )
        self._outbound: asyncio.Queue[list[Reading | Event]] | None = None
        self._started = time.monotonic()
        self.dropped = 0  # batches lost to a full queue
        # bleak's DEBUG lines dump BlueZ's device table: every phone in range, by address.
        bleak_log = logging.getLogger("bleak")
        bleak_log.setLevel(max(bleak_log.getEffectiveLevel(), logging.WARNING))

    # --- the Driver contract ----------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        self._outbound = asyncio.Queue(QUEUE_BATCHES)
        self._started = time.monotonic()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._radio.run(), name=f"{self.name}:radio")
                if self._sensors:
                    tasks.create_task(self._watch_silence(), name=f"{self.name}:silence")
                for sensor in self._sensors.values():
                    if sensor.config.gatt is not None:
                        tasks.create_task(self._maintain(sensor), name=f"{self.name}:{sensor.name}")
                await self._deliver(emit)
        finally:
            self._outbound = None

    async def read(self, device: str, points: Sequence[str] | None = None) -> list[Reading]:
        """Advertised points: the last value heard (advertisements are the sensor's only
        voice). GATT points (battery_level, manufacturer, model, firmware, hardware,
        software): a live connection, which costs the sensor battery."""
        sensor = self._sensor(device)
        if points is None:
            if not sensor.values:
                raise DeviceUnreachable(f"{device}: nothing heard from it yet")
            return list(sensor.values.values())
        gatt = [p for p in points if p in GATT_POINTS]
        heard = [p for p in points if p not in GATT_POINTS]
        for point in heard:
            if point != "rssi" and point_type(point) is None:
                raise UnknownPoint(
                    f"{device}.{point}: neither a BTHome point nor a GATT point "
                    f"({', '.join(sorted(GATT_POINTS))})"
                )
        missing = [p for p in heard if p not in sensor.values]
        if missing:
            raise DeviceUnreachable(f"{device}: no {', '.join(missing)} heard from it yet")
        readings = [sensor.values[p] for p in heard]
        if gatt:
            readings += await self._gatt_read(sensor, gatt)
        return readings

    async def write(self, device: str, point: str, value: Value) -> None:
        self._sensor(device)
        raise PointNotWritable(
            f"{device}.{point}: BLE sensors are read-only here (advertisements, maintenance reads)"
        )

    def health(self) -> list[DeviceHealth]:
        radio = self._radio
        out = [self._adapter_health()]
        for sensor in self._sensors.values():
            health = dataclasses.replace(sensor.health, errors=dict(sensor.health.errors))
            if radio.up is False:
                health.state = DeviceState.DOWN
                health.detail = f"no radio: {radio.detail}"
            elif health.detail is None and sensor.rssi is not None:
                health.detail = f"rssi {sensor.rssi} dBm"
            out.append(health)
        return out

    def catalogue(self) -> dict[str, DeviceInfo]:
        out = {}
        for sensor in self._sensors.values():
            points = {**sensor.points, "rssi": RSSI}
            for point, (_, unit) in CHARACTERISTICS.items():
                points[point] = PointInfo(
                    point, "int" if point == "battery_level" else "text", unit
                )
            out[sensor.name] = DeviceInfo(sensor.name, "bthome", self.name, points)
        return out

    @property
    def unknown_advertisements(self) -> int | None:
        """How many advertisements came from unlisted devices (None unless count_unknown)."""
        return self._gate.unknown_advertisements

    # --- the scanner callback: privacy gate first ------------------------------------

    def _on_advertisement(self, device: BLEDevice, adv: AdvertisementData) -> None:
        self._radio.heard()
        config = self._gate.admit(device.address)
        if config is None:
            return  # not ours: nothing about this advertiser outlives this line
        sensor = self._sensors[config.name]
        try:
            self._on_sensor(sensor, device, adv)
        except Exception as exc:  # a bug here must not unwind into bleak's D-Bus handler
            sensor.health.count_error("internal")
            log.error(
                "ble.callback_failed", device=sensor.name, error=f"{type(exc).__name__}: {exc}"
            )

    def _on_sensor(self, sensor: Sensor, device: BLEDevice, adv: AdvertisementData) -> None:
        now, wall = time.monotonic(), now_wall()
        sensor.heard(device, adv.rssi, wall)
        data = adv.service_data.get(BTHOME_UUID)
        if data is None:
            return  # e.g. a scan response with only the name in it
        try:
            packet = decode(data, mac=sensor.config.mac, bindkey=sensor.config.key)
        except BTHomeError as exc:
            self._reject(sensor, exc.reason, exc.detail)
            return
        verdict = sensor.judge(packet, now)
        if verdict == "repeat":
            return
        if verdict == "replay":
            self._reject(sensor, "replay", f"counter {packet.counter} is not above the last one")
            return
        if packet.unknown_object is not None:
            sensor.health.count_error("unknown_object")
            log.debug(
                "ble.unknown_object", device=sensor.name, object_id=f"0x{packet.unknown_object:02x}"
            )
        name = sensor.name
        readings = [Reading(name, m.point, m.value, wall, m.unit) for m in packet.measurements]
        readings.append(Reading(name, "rssi", adv.rssi, wall, "dBm"))
        items: list[Reading | Event] = [*readings]
        for trigger in packet.triggers:
            data_: dict[str, Any] = {"point": trigger.point, "action": trigger.action}
            if trigger.steps is not None:
                data_["steps"] = trigger.steps
            items.append(Event(f"ble.{trigger.point.split('_')[0]}", name, wall, data=data_))
        if sensor.recovered():
            log.info("ble.sensor_recovered", device=name, errors=sum(sensor.health.errors.values()))
        if sensor.alarmed:
            sensor.alarmed = False
            log.info("ble.sensor_back", device=name)
            items.append(Event(SILENT, name, wall, Severity.ALARM, active=False))
        sensor.accepted(readings, now)
        sensor.health.detail = None  # health() shows the live RSSI instead
        self._send(items, sensor)

    def _reject(self, sensor: Sensor, reason: str, detail: str) -> None:
        sensor.health.detail = f"heard, but frames rejected: {reason}: {detail}"
        if sensor.failed(reason):
            log.warning("ble.frame_rejected", device=sensor.name, reason=reason, detail=detail)
        else:
            log.debug("ble.frame_rejected", device=sensor.name, reason=reason)

    def _send(self, items: list[Reading | Event], sensor: Sensor | None = None) -> None:
        if self._outbound is None:
            return
        try:
            self._outbound.put_nowait(items)
        except asyncio.QueueFull:
            self.dropped += 1
            if sensor is not None:
                sensor.health.count_error("queue_full")
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("ble.queue_full", driver=self.name, dropped=self.dropped)

    async def _deliver(self, emit: Emit) -> None:
        assert self._outbound is not None
        queue = self._outbound
        while True:
            batch = await queue.get()
            while not queue.empty() and len(batch) < 500:
                batch += queue.get_nowait()
            await emit(batch)

    # --- silence and the adapter -------------------------------------------------------

    async def _watch_silence(self) -> None:
        sensors = list(self._sensors.values())
        tick = min(5.0, max(0.01, min(s.silence_limit for s in sensors) / 4))
        while True:
            await asyncio.sleep(tick)
            if not self._radio.up:
                continue  # the adapter alarm says it all; sensors are not to blame
            now = time.monotonic()
            for sensor in sensors:
                if sensor.alarmed:
                    continue
                since = max(sensor.last_good or self._started, self._radio.up_since)
                quiet = now - since
                if quiet >= sensor.silence_limit:
                    self._silent(sensor, quiet)

    def _silent(self, sensor: Sensor, quiet: float) -> None:
        sensor.alarmed = True
        health = sensor.health
        health.state = DeviceState.DOWN
        health.since = now_wall()
        health.count_error("silent")
        heard_only = health.last_seen is not None and (
            sensor.last_good is None or health.last_seen > now_wall() - quiet
        )
        health.detail = (
            f"no valid frame for {quiet:.0f} s (expected every {sensor.config.interval:g} s)"
            + ("; it is heard, but its frames are rejected" if heard_only else "")
        )
        log.warning(
            "ble.sensor_silent", device=sensor.name, silent_s=round(quiet, 1), heard=heard_only
        )
        data = {"silent_s": round(quiet, 1), "expected_interval_s": sensor.config.interval}
        self._send([Event(SILENT, sensor.name, now_wall(), Severity.ALARM, True, data)], sensor)

    def _adapter_changed(self, up: bool, detail: str) -> None:
        data = {"adapter": self.section.adapter, "detail": detail}
        self._send([Event(ADAPTER_DOWN, self.name, now_wall(), Severity.ALARM, not up, data)])

    def _adapter_health(self) -> DeviceHealth:
        radio = self._radio
        state = {None: DeviceState.UNKNOWN, True: DeviceState.UP, False: DeviceState.DOWN}
        detail = radio.detail or f"starting {self.section.scanning} scan on {radio.adapter}"
        unknown = self._gate.unknown_advertisements
        if unknown is not None:
            detail += f"; {unknown} advertisements from unlisted devices (a count, nothing else)"
        return DeviceHealth(
            device=f"{self.name}:{radio.adapter}",
            driver=self.name,
            state=state[radio.up],
            since=radio.since,
            last_seen=radio.last_heard_wall(),
            requests=radio.starts,
            errors=dict(radio.failures),
            detail=detail,
        )

    # --- maintenance reads ----------------------------------------------------------

    async def _maintain(self, sensor: Sensor) -> None:
        """Scheduled GATT reads for one sensor; its own task, so retries never hold up the
        scanner or another sensor (the adapter lock still serialises connections)."""
        schedule = sensor.config.gatt
        assert schedule is not None
        # Spread the first reads so a gateway start does not connect to every sensor at once.
        await asyncio.sleep(random.uniform(0, min(schedule.every, schedule.first_within)))
        while True:
            backoff = Backoff(schedule.retry_delay, schedule.retry_delay * 2**schedule.retries,
                              full_jitter=True)  # fmt: skip
            for attempt in range(schedule.retries + 1):
                if self._radio.up:
                    try:
                        readings = await self._gatt_read(sensor, schedule.points)
                    except DeviceError:
                        pass  # counted and logged in _gatt_read
                    else:
                        self._send(list(readings), sensor)
                        break
                if attempt < schedule.retries:
                    await asyncio.sleep(backoff.next())
            await asyncio.sleep(schedule.every)

    async def _gatt_read(self, sensor: Sensor, points: Sequence[str]) -> list[Reading]:
        if self._radio.up is False:
            raise DeviceUnreachable(f"{sensor.name}: no radio: {self._radio.detail}")
        target: BLEDevice | str = sensor.ble_device or sensor.config.address
        try:
            values = await self._gatt.read(sensor.name, target, points)
        except DeviceError as exc:
            reason = "gatt_rejected" if isinstance(exc, DeviceRejected) else "gatt_unreachable"
            if sensor.failed(reason, gatt=True):
                log.warning("ble.gatt_failed", device=sensor.name, reason=reason, error=str(exc))
            else:
                log.debug("ble.gatt_failed", device=sensor.name, reason=reason)
            raise
        if sensor.recovered(gatt=True):
            log.info("ble.gatt_recovered", device=sensor.name)
        wall = now_wall()
        readings = [
            Reading(sensor.name, p, v, wall, CHARACTERISTICS[p][1]) for p, v in values.items()
        ]
        for reading in readings:
            sensor.values[reading.point] = reading
        return readings

    def _sensor(self, device: str) -> Sensor:
        sensor = self._sensors.get(device)
        if sensor is None:
            raise UnknownDevice(f"{device}: not a sensor of BLE driver {self.name}")
        return sensor
