"""Realistic uplink payloads for the shipped device types (layouts: docs/lorawan-devices.md),
for the packet-forwarder simulator, the demo, the tests and the benchmark."""

from __future__ import annotations

import struct


def bin_report(distance_mm: int, temp_c: float, tilt: int = 0, status: int = 0,
               battery_v: float = 3.6) -> bytes:  # fmt: skip
    return struct.pack(">HhBBH", distance_mm, round(temp_c * 10), tilt, status,
                       round(battery_v * 1000))  # fmt: skip


def environment_report(noise_db: float, no2: float, pm25: float, pm10: float,
                       temp_c: float, humidity: float, status: int = 0) -> bytes:  # fmt: skip
    tenths = [round(v * 10) for v in (noise_db, no2, pm25, pm10)]
    return struct.pack(">HHHHhBB", *tenths, round(temp_c * 100), round(humidity * 2), status)


def parking_report(occupied: bool, battery_v: float = 3.5, temp_c: int = 12,
                   arrivals: int = 0) -> bytes:  # fmt: skip
    """The daily status frame (FPort 2); FPort 1 carries the status byte alone."""
    return struct.pack(">BHbB", int(occupied), round(battery_v * 1000), temp_c, arrivals)


def example_payload(device_type: str, i: int) -> tuple[int, bytes]:
    """(FPort, payload) of the i-th report of a sensor of `device_type`."""
    if device_type == "waste-bin":
        return 1, bin_report(1100 - (i * 37) % 1000, 18 + (i % 10) * 0.5, tilt=i % 4)
    if device_type == "environment-station":
        return 1, environment_report(55 + i % 20, 30 + i % 50, 8 + i % 12, 15 + i % 20,
                                     12.5 + (i % 8), 60 + i % 30)  # fmt: skip
    if device_type == "parking-sensor":
        return 2, parking_report(bool(i % 2), 3.5, 12, i % 7)
    raise ValueError(f"no example payload for {device_type!r}")
