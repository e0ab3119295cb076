"""What may leave the city as open data, and how a day of a site becomes records.

Every point a gateway can send has a class (docs/open-data.md lists them all):
PUBLIC points are published, only as per-device daily aggregates; INTERNAL ones
(operations, maintenance, security of the equipment) and PERSONAL ones (anything
that can follow a person: a vehicle's position, a radio address, a plate) never are.
A point with no class is treated as personal: nothing is published by default.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Class(StrEnum):
    PUBLIC = "public"
    INTERNAL = "internal"
    PERSONAL = "personal"


PUBLIC_POINTS: dict[str, str] = {  # point -> category of the device that has it
    "energy": "lamppost",  # kWh counter of the lamppost's LED driver
    "dimming": "lamppost",  # % output
    "fill": "waste-bin",
    "fill_percent": "waste-bin",
    "pm25": "air",
    "pm10": "air",
    "no2": "air",
    "temperature": "air",
    "humidity": "air",
    "noise_laeq": "noise",
    "occupied": "parking",
}
INTERNAL_POINTS = frozenset({
    # lamppost controller: electrical detail, faults, maintenance
    "lamp_on", "power", "voltage", "current", "burning_hours", "lamp_failure", "driver_fault",
    "overtemperature", "door_open", "driver_temperature", "power_factor", "frequency",
    "rated_power", "switch_count", "firmware_version", "comms_timeout", "failsafe_dimming",
    # cabinet energy meter
    "voltage_l1", "voltage_l2", "voltage_l3", "current_l1", "current_l2", "current_l3",
    "power_l1", "power_l2", "power_l3", "active_power", "energy_import", "energy_export",
    # traffic controller: plans and detector loops are operational, and a safety matter
    "mode", "plan", "cycle_counter", "cycle_second", "cycle_length", "active_plan",
    "conflict", "power_failure", "occupancy_1", "occupancy_2", "occupancy_3", "occupancy_4",
    # LoRaWAN sensors: device health and raw measurements behind the public values
    "battery", "battery_percent", "battery_low", "distance", "tilt", "lid_open", "tipped",
    "status", "inlet_heater_on", "no2_fault", "pm_fault", "arrivals", "rssi", "snr",
})  # fmt: skip
PERSONAL_POINTS = frozenset({
    # a city vehicle's GPS: where its driver is, minute by minute
    "latitude", "longitude", "altitude", "speed", "heading", "hdop", "satellites", "fix",
    "fix_mode",
    "clock_hint",
    # radio and vehicle identities (the agent never sends them; listed so they never could)
    "mac", "address", "ble_address", "device_address", "plate", "licence_plate",
})  # fmt: skip


def classify(point: str) -> Class:
    if point in PUBLIC_POINTS:
        return Class.PUBLIC
    if point in INTERNAL_POINTS:
        return Class.INTERNAL
    return Class.PERSONAL  # personal listed, or unknown: never published


@dataclass(frozen=True, slots=True)
class Record:
    device: str
    category: str
    metric: str
    value: float
    unit: str
    samples: int


Sample = tuple[str, str, float, float]  # device, point, number, ts


def aggregate(samples: Iterable[Sample]) -> list[Record]:
    """A day's public samples (already filtered to PUBLIC points) as per-device records,
    in device then metric order. Raw values never leave: only these aggregates."""
    series: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for device, point, number, ts in samples:
        if classify(point) is Class.PUBLIC and math.isfinite(number):
            series[(device, point)].append((ts, number))
    out: list[Record] = []
    for device in sorted({d for d, _ in series}):
        points = {p: sorted(series[(d, p)]) for d, p in series if d == device}
        out += _device_records(device, points)
    return out


def _device_records(device: str, points: dict[str, list[tuple[float, float]]]) -> list[Record]:
    records: list[Record] = []

    def add(point: str, metric: str, value: float, unit: str) -> None:
        records.append(Record(device, PUBLIC_POINTS[point], metric, round(value, 3), unit,
                              len(points[point])))  # fmt: skip

    if "energy" in points:
        values = [v for _, v in points["energy"]]
        used = max(0.0, values[-1] - values[0])  # a counter: what it rose by during the day
        add("energy", "energy_kwh", used, "kWh")
        dims = [v for _, v in points.get("dimming", [])]
        mean_dim = sum(dims) / len(dims) if dims else 100.0
        if dims:
            add("dimming", "dimming_mean_pct", mean_dim, "%")
        # Saving against the same hours at full output: used / (mean dimming) - used.
        saving = used * (100.0 / mean_dim - 1.0) if 0 < mean_dim <= 100 else 0.0
        add("energy", "saving_kwh", saving, "kWh")
    for point in ("fill", "fill_percent"):
        if point in points:
            values = [v for _, v in points[point]]
            add(point, "fill_last_pct", values[-1], "%")
            add(point, "fill_max_pct", max(values), "%")
    for point, unit in (("pm25", "µg/m³"), ("pm10", "µg/m³"), ("no2", "µg/m³"),
                        ("temperature", "°C"), ("humidity", "%")):  # fmt: skip
        if point in points:
            values = [v for _, v in points[point]]
            add(point, f"{point}_mean", sum(values) / len(values), unit)
            add(point, f"{point}_max", max(values), unit)
    if "noise_laeq" in points:
        values = [v for _, v in points["noise_laeq"]]
        energy = sum(10 ** (v / 10) for v in values) / len(values)  # decibels average as energy
        add("noise_laeq", "laeq_day_db", 10 * math.log10(energy), "dB(A)")
        add("noise_laeq", "laeq_max_db", max(values), "dB(A)")
    if "occupied" in points:
        values = [1.0 if v else 0.0 for _, v in points["occupied"]]
        add("occupied", "occupancy_pct", 100.0 * sum(values) / len(values), "%")
    return records
