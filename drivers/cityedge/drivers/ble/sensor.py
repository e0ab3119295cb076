"""What the driver remembers of one configured sensor: when it was heard, what it said
last, whether a frame is new, a repeat or a replay, and its health."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from bleak.backends.device import BLEDevice

from cityedge.drivers.ble.bthome import Packet, point_type
from cityedge.drivers.ble.config import DeviceSection
from cityedge.sdk.model import DeviceHealth, DeviceState, PointInfo, Reading

Verdict = Literal["new", "repeat", "replay"]


def point_info(name: str) -> PointInfo:
    kind = point_type(name)
    if kind is None:
        return PointInfo(name, "float")
    if kind.kind == "binary":
        return PointInfo(name, "bool")
    if kind.kind in ("text", "raw"):
        return PointInfo(name, "text")
    return PointInfo(name, "int" if kind.factor == 1 else "float", kind.unit)


@dataclass(eq=False)
class Sensor:
    config: DeviceSection
    health: DeviceHealth
    ble_device: BLEDevice | None = None  # the latest, to connect to for GATT reads
    rssi: int | None = None
    last_good: float | None = None  # monotonic time of the last accepted frame
    alarmed: bool = False  # the silence alarm is raised
    failing: bool = False  # frames rejected: first logged loudly, the rest quietly
    gatt_failing: bool = False  # same, for maintenance reads
    values: dict[str, Reading] = field(default_factory=dict)
    points: dict[str, PointInfo] = field(default_factory=dict)
    _packet_id: int | None = None
    _counter: int | None = None
    _content: tuple[object, ...] | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def silence_limit(self) -> float:
        return self.config.interval * self.config.silent_after

    def heard(self, device: BLEDevice, rssi: int, wall: float) -> None:
        self.ble_device = device
        self.rssi = rssi
        self.health.last_seen = wall

    def judge(self, packet: Packet, now: float) -> Verdict:
        """Sensors repeat each frame several times for reliability; only the first counts.

        Encrypted frames carry a counter that must grow, which also stops an old
        frame recorded off the air from being replayed. A sensor that restarted
        (counter back near zero) is accepted again once it has been silent long
        enough to raise the silence alarm: there is no better proof of a restart.
        """
        if packet.counter is not None:
            if self._counter is not None and packet.counter <= self._counter:
                if packet.counter == self._counter:
                    return "repeat"
                if not self.alarmed:
                    return "replay"
            self._counter = packet.counter
            return "new"
        if packet.packet_id is not None:
            if packet.packet_id == self._packet_id:
                return "repeat"
            self._packet_id = packet.packet_id
            return "new"
        # No packet id: the same content again within one interval is a repeat.
        content = (packet.measurements, packet.triggers)
        if (
            content == self._content
            and self.last_good is not None
            and now - self.last_good < self.config.interval / 2
        ):
            return "repeat"
        self._content = content
        return "new"

    def accepted(self, readings: list[Reading], now: float) -> None:
        self.last_good = now
        self.health.requests += 1
        if self.health.state is not DeviceState.UP:
            self.health.state = DeviceState.UP
            self.health.since = time.time()
        for reading in readings:
            self.values[reading.point] = reading
            if reading.point not in self.points:
                self.points[reading.point] = point_info(reading.point)

    def failed(self, reason: str, *, gatt: bool = False) -> bool:
        """Count a failure; True if it is the first since the sensor (or its GATT
        reads) last worked: that one is logged loudly, the rest quietly."""
        self.health.count_error(reason)
        first = not (self.gatt_failing if gatt else self.failing)
        if gatt:
            self.gatt_failing = True
        else:
            self.failing = True
        return first

    def recovered(self, *, gatt: bool = False) -> bool:
        """True if the sensor (or its GATT reads) was failing until now."""
        was = self.gatt_failing if gatt else self.failing
        if gatt:
            self.gatt_failing = False
        else:
            self.failing = False
        return was
