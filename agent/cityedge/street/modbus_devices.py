"""Simulated Modbus devices: registers laid out by the same profiles the driver
reads, encoded by the same codec, with request counters, fault switches and a
little physics (lampposts dimming, a meter summing their load, traffic-light
controllers cycling and raising faults). `modbus_server` puts them on the wire;
`modbus` gathers them into a street or a junction cabinet.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from enum import IntEnum, StrEnum
from typing import ClassVar

from cityedge.drivers.modbus.codec import decode, encode, with_bit
from cityedge.drivers.modbus.errors import ExceptionReply
from cityedge.drivers.modbus.points import DataType, Point, RegisterKind
from cityedge.drivers.modbus.profile import Profile
from cityedge.drivers.modbus.rtu import rtu_crc
from cityedge.sdk.model import Value


class Fault(StrEnum):
    SILENT = "silent"  # takes requests, never answers
    GARBAGE = "garbage"  # read replies too short to decode (writes answered normally)
    EXCEPTION = "exception"  # every request answered with exception 4 (device failure)
    TRUNCATED = "truncated"  # the last bytes of every reply are lost
    BAD_CRC = "bad-crc"  # RTU replies arrive whole, with a wrong CRC (TCP: no effect)
    WRONG_TID = "wrong-tid"  # TCP replies carry another transaction id (RTU: no effect)


class SimulatedDevice:
    """Registers laid out by a profile, with request counters and fault switches.

    Subclasses add physics in `update()`, called before every read.
    """

    def __init__(self, name: str, profile: Profile, *, unit: int = 1, seed: int = 0) -> None:
        self.name = name
        self.profile = profile
        self.unit = unit
        self.fault: Fault | None = None
        self.mangle: Callable[[bytes], bytes] | None = None  # for fuzzing the client
        self.write_delay = 0.0  # s the answer to a write is held back, once it is applied
        self.reads = 0
        self.writes = 0
        self.random = random.Random(seed)
        sizes: dict[RegisterKind, int] = {}
        for point in profile.points.values():
            sizes[point.register] = max(sizes.get(point.register, 0), point.end)
        self.tables = {kind: [0] * sizes.get(kind, 0) for kind in RegisterKind}
        self._writable = {
            (p.register, a): p for p in profile.points.values() if p.writable
            for a in range(p.address, p.end)
        }  # fmt: skip
        # the device may report what a master may not write: no min/max when it sets values
        self._unlimited = {
            n: replace(p, minimum=None, maximum=None) for n, p in profile.points.items()
        }

    # --- the wire's DeviceModel ---------------------------------------------------

    def read(self, kind: RegisterKind, address: int, count: int) -> list[int]:
        self.reads += 1
        if self.fault is Fault.EXCEPTION:
            raise ExceptionReply(4)
        table = self.tables[kind]
        if address + count > len(table):
            raise ExceptionReply(2, f"{kind} {address}+{count} beyond {len(table)}")
        self.update()
        return table[address : address + count]

    def write(self, kind: RegisterKind, address: int, values: list[int]) -> None:
        self.writes += 1
        if self.fault is Fault.EXCEPTION:
            raise ExceptionReply(4)
        touched = {self._writable.get((kind, a)) for a in range(address, address + len(values))}
        if None in touched:
            raise ExceptionReply(2, f"{kind} {address}+{len(values)} is not writable")
        table = self.tables[kind]
        before = table[address : address + len(values)]
        table[address : address + len(values)] = values
        for point in touched:
            assert point is not None
            value = self.get(point.name)
            low = point.minimum if point.minimum is not None else float("-inf")
            high = point.maximum if point.maximum is not None else float("inf")
            allowed = point.choices is None or value in point.choices
            if isinstance(value, int | float) and not (low <= value <= high and allowed):
                table[address : address + len(values)] = before
                raise ExceptionReply(3, f"{point.name} = {value}")
        self.written({p.name for p in touched if p is not None})

    def reply(self, frame: bytes) -> bytes:
        if self.mangle is not None:
            return self.mangle(frame)
        if self.fault is Fault.SILENT:
            return b""
        if self.fault is Fault.GARBAGE and len(frame) > 8 and frame[7] in (1, 2, 3, 4):
            # well framed, but too short: no bits, or one register where more were asked
            tid, proto, _length, unit = struct.unpack(">HHHB", frame[:7])
            pdu = bytes([frame[7], 0]) if frame[7] in (1, 2) else bytes([frame[7], 2, 0xDE, 0xAD])
            return struct.pack(">HHHB", tid, proto, len(pdu) + 1, unit) + pdu
        if self.fault is Fault.TRUNCATED:
            return frame[:-1]
        if self.fault is Fault.WRONG_TID and len(frame) > 2:
            return ((int.from_bytes(frame[:2], "big") + 1) & 0xFFFF).to_bytes(2, "big") + frame[2:]
        return frame

    def reply_rtu(self, frame: bytes) -> bytes:
        """The bytes this device puts on the serial line for the RTU reply `frame`."""
        if self.mangle is not None:
            return self.mangle(frame)
        if self.fault is Fault.SILENT:
            return b""
        if self.fault is Fault.GARBAGE and len(frame) > 4 and frame[1] in (1, 2, 3, 4):
            # well framed, good CRC, but too short: no bits, or one register
            body = frame[:2] + (b"\x00" if frame[1] in (1, 2) else b"\x02\xde\xad")
            return body + rtu_crc(body)
        if self.fault is Fault.TRUNCATED:
            return frame[:-3]
        if self.fault is Fault.BAD_CRC:
            return frame[:-1] + bytes([frame[-1] ^ 0x5A])
        return frame

    # --- state, in engineering values ----------------------------------------------

    def get(self, name: str) -> Value:
        point = self.profile.points[name]
        return decode(point, self.tables[point.register][point.address : point.end])

    def put(self, name: str, value: Value) -> None:
        point = self.profile.points[name]
        table = self.tables[point.register]
        if point.type is DataType.BIT:
            table[point.address] = with_bit(point, table[point.address], bool(value))
            return
        table[point.address : point.end] = encode(self._unlimited[name], _clamp(point, value))

    def update(self) -> None:
        """Advance the physics to now (no physics by default)."""

    def written(self, names: set[str]) -> None:
        """React to points the master just wrote."""


def _clamp(point: Point, value: Value) -> Value:
    """Keep simulated measurements inside what the register type can carry."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if point.type is DataType.FLOAT32:
        return float(value)
    bits = 16 * point.type.registers
    signed = point.type in (DataType.INT16, DataType.INT32)
    low = -(2 ** (bits - 1)) if signed else 0
    high = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    raw = min(max((value - point.offset) / point.scale, float(low)), float(high))
    return float(raw * point.scale + point.offset)


class Lamppost(SimulatedDevice):
    """An LED lamppost controller: power follows on/off × dimming × rated watts
    with a little noise; energy, burning hours and switch count accumulate."""

    RATED = (40, 60, 80, 100, 120)

    def __init__(self, name: str, profile: Profile, *, seed: int = 0, speed: float = 1.0) -> None:
        super().__init__(name, profile, seed=seed)
        self.speed = speed
        self.lamp_failed = False
        self.driver_fault = False
        self._energy = self.random.uniform(100, 5000)  # kWh, kept finer than the register
        self._hours = self.random.uniform(1000, 20000)
        self._last = time.monotonic()
        self.power_w = 0.0
        self.put("rated_power", self.random.choice(self.RATED))
        self.put("firmware_version", 0x0203)
        self.put("switch_count", self.random.randint(100, 5000))
        self.put("lamp_on", True)
        self.put("dimming", 80)
        self.put("comms_timeout", 300)
        self.put("failsafe_dimming", 100)
        self.update()

    def written(self, names: set[str]) -> None:
        if "lamp_on" in names and self.get("lamp_on"):
            self.put("switch_count", int(self.get("switch_count")) + 1)
        self.update()

    def update(self) -> None:
        now = time.monotonic()
        hours = (now - self._last) * self.speed / 3600
        self._last = now
        noise = self.random.gauss
        lit = bool(self.get("lamp_on")) and not self.lamp_failed and not self.driver_fault
        rated = float(self.get("rated_power"))
        level = float(self.get("dimming")) / 100
        self.power_w = rated * level * (1 + noise(0, 0.01)) if lit and level > 0 else 0.4
        self._energy += self.power_w * hours / 1000
        self._hours += hours if lit and level > 0 else 0
        voltage = 230 + noise(0, 1.5)
        pf = 0.95 if self.power_w > 1 else 0.4
        self.put("power", max(self.power_w, 0.0))
        self.put("voltage", voltage)
        self.put("current", self.power_w / voltage / pf)
        self.put("power_factor", pf)
        self.put("frequency", 50 + noise(0, 0.02))
        self.put("energy", self._energy)
        self.put("burning_hours", self._hours)
        self.put("driver_temperature", 22 + 30 * self.power_w / rated + noise(0, 0.3))
        self.put("lamp_failure", self.lamp_failed)
        self.put("driver_fault", self.driver_fault)


class EnergyMeter(SimulatedDevice):
    """A three-phase cabinet meter measuring what `load()` says the street draws."""

    def __init__(
        self,
        name: str,
        profile: Profile,
        load: Callable[[], tuple[float, float, float]],
        *,
        unit: int = 1,
        seed: int = 0,
        speed: float = 1.0,
    ) -> None:
        super().__init__(name, profile, unit=unit, seed=seed)
        self.load = load
        self.speed = speed
        self._import = self.random.uniform(10_000, 90_000)
        self._last = time.monotonic()
        self.update()

    def update(self) -> None:
        now = time.monotonic()
        hours = (now - self._last) * self.speed / 3600
        self._last = now
        noise = self.random.gauss
        phases = [p + 50 for p in self.load()]  # 50 W of cabinet electronics per phase
        total = sum(phases)
        self._import += total * hours / 1000
        for i, watts in enumerate(phases, start=1):
            volts = 231 + noise(0, 1.0)
            self.put(f"voltage_l{i}", volts)
            self.put(f"current_l{i}", watts / volts / 0.95)
            self.put(f"power_l{i}", watts)
        self.put("active_power", total)
        self.put("power_factor", 0.95 + noise(0, 0.005))
        self.put("frequency", 50 + noise(0, 0.02))
        self.put("energy_import", self._import)
        self.put("energy_export", 0.0)


class TrafficMode(IntEnum):
    """The `mode` register of a traffic controller (config/profiles/traffic-controller.toml)."""

    NORMAL = 0
    FLASHING_AMBER = 1
    DARK = 2
    MANUAL = 3


TRAFFIC_FAULTS = ("lamp_failure", "conflict", "door_open", "power_failure")


class TrafficController(SimulatedDevice):
    """A junction's traffic-light controller.

    In normal (and manual) mode the signal plan's cycle runs: the cycle second
    advances with time (× `speed`), the cycle counter at each wrap, and a plan
    asked for through `plan` takes over at the end of the running cycle.
    Flashing amber and dark stop the cycle. Detector occupancy wanders around
    what the running plan's traffic would be. `inject()` raises a fault bit; a
    conflict also forces flashing amber, as a conflict monitor does. A remote
    write of manual mode is refused (exception 3): the police panel is in the cabinet.
    """

    CYCLE_S: ClassVar[Mapping[int, int]] = {1: 60, 2: 80, 3: 90, 4: 120}  # per plan
    TRAFFIC: ClassVar[Mapping[int, float]] = {1: 12.0, 2: 45.0, 3: 50.0, 4: 70.0}  # occupancy %

    def __init__(
        self, name: str, profile: Profile, *, unit: int = 1, seed: int = 0, speed: float = 1.0
    ) -> None:
        super().__init__(name, profile, unit=unit, seed=seed)
        self.speed = speed
        self.faults: set[str] = set()
        self._last = time.monotonic()
        self._second = self.random.uniform(0, self.CYCLE_S[1])
        self._occupancy = [self.random.uniform(5, 20) for _ in range(4)]
        self.put("mode", TrafficMode.NORMAL)
        self.put("plan", 1)
        self.put("active_plan", 1)
        self.put("cycle_length", self.CYCLE_S[1])
        self.put("cycle_counter", self.random.randint(1_000, 900_000))
        self.update()

    def write(self, kind: RegisterKind, address: int, values: list[int]) -> None:
        mode = self.profile.points["mode"]
        if (kind, address) == (mode.register, mode.address) and values[:1] == [TrafficMode.MANUAL]:
            self.writes += 1
            raise ExceptionReply(3, "manual mode is taken at the cabinet only")
        super().write(kind, address, values)

    def inject(self, fault: str, active: bool = True) -> None:
        """Raise (or clear) one of `TRAFFIC_FAULTS`."""
        if fault not in TRAFFIC_FAULTS:
            raise KeyError(f"no fault {fault!r} (known: {', '.join(TRAFFIC_FAULTS)})")
        if active:
            self.faults.add(fault)
            if fault == "conflict":
                self.put("mode", TrafficMode.FLASHING_AMBER)
        else:
            self.faults.discard(fault)
        self.update()

    def update(self) -> None:
        now = time.monotonic()
        elapsed = (now - self._last) * self.speed
        self._last = now
        if self.get("mode") in (TrafficMode.NORMAL, TrafficMode.MANUAL):
            cycles, self._second = divmod(self._second + elapsed, float(self.get("cycle_length")))
            if cycles:
                plan = int(self.get("plan"))
                self.put("cycle_counter", (int(self.get("cycle_counter")) + int(cycles)) % 2**32)
                self.put("active_plan", plan)
                self.put("cycle_length", self.CYCLE_S.get(plan, 60))
        self.put("cycle_second", int(self._second))
        target = self.TRAFFIC.get(int(self.get("active_plan")), 20.0)
        for i, level in enumerate(self._occupancy):
            level += 0.2 * (target - level) + self.random.gauss(0, 2)
            self._occupancy[i] = min(max(level, 0.0), 100.0)
            self.put(f"occupancy_{i + 1}", self._occupancy[i])
        for fault in TRAFFIC_FAULTS:
            self.put(fault, fault in self.faults)
