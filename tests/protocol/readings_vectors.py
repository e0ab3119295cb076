"""Readings vectors of realistic size: one poll of 17 lampposts x 17 points, as a plain
and as a deflated block, and a small message that shows every value rule. Written
to docs/test-vectors/readings/ and checked by test_readings_vectors.py.

Regenerate after a deliberate protocol change:

    .venv/bin/python -m tests.protocol.readings_vectors --write
"""

from __future__ import annotations

import json
import random
import sys
import zlib
from typing import Any

import msgpack

from cityedge.drivers.modbus.profile import resolve_profile
from cityedge.protocol.dictionary import DICTIONARY
from cityedge.protocol.entries import reading_entry
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.sealing import MESSAGE_CONTEXT, seal
from cityedge.sdk.model import Quality, Reading
from cityedge.street.modbus_devices import SimulatedDevice
from tests.protocol.vectors import (
    GATEWAY,
    GATEWAY_SEED,
    PREFIX,
    SITE,
    VECTOR_DIR,
    gateway_key,
    plain,
)

READINGS_DIR = VECTOR_DIR / "readings"
POLL_MS = 1_764_000_000_000  # 2025-11-24T16:00:00Z
SETTINGS = ("comms_timeout", "failsafe_dimming")  # configuration, not measurements


def street_poll(lampposts: int = 17) -> list[Reading]:
    """One poll round of a street: every measured point of every lamppost, each
    lamppost's registers encoded and decoded by the Modbus codec, as the driver
    does; lamppost 5 is switched off and lamppost 11 has a failed lamp."""
    profile = resolve_profile("lamppost")
    points = [p for p in profile.points.values() if p.name not in SETTINGS]
    out: list[Reading] = []
    for n in range(1, lampposts + 1):
        device = SimulatedDevice(f"lamppost-{n:03d}", profile)
        rnd = random.Random(n)
        rated = rnd.choice((40, 60, 80, 100, 120))
        on, dimming = n != 5, rnd.choice((60, 80, 100))
        watts = rated * dimming / 100 * (1 + rnd.gauss(0, 0.01)) if on else 0.4
        volts = 230 + rnd.gauss(0, 1.5)
        values: dict[str, Any] = {
            "lamp_on": on, "dimming": dimming, "power": watts, "voltage": volts,
            "current": watts / volts / (0.95 if on else 0.4),
            "energy": rnd.uniform(100, 5000), "burning_hours": rnd.uniform(1000, 20000),
            "lamp_failure": n == 11, "driver_fault": False, "overtemperature": False,
            "door_open": False, "driver_temperature": 22 + 30 * watts / rated + rnd.gauss(0, 0.3),
            "power_factor": 0.95 if on else 0.4, "frequency": 50 + rnd.gauss(0, 0.02),
            "rated_power": rated, "switch_count": rnd.randint(100, 5000),
            "firmware_version": 0x0203,
        }  # fmt: skip
        ts = (POLL_MS + 7 * n) / 1000  # a round takes about 120 ms: 7 ms a lamppost
        for point in points:
            device.put(point.name, values[point.name])
            out.append(Reading(device.name, point.name, device.get(point.name), ts, point.unit))
    return out


def value_rules() -> list[Reading]:
    """A few readings that show each rule of docs/protocol.md §6.1."""
    t = POLL_MS / 1000
    return [
        Reading("meter-1", "voltage", 230.1, t, "V"),  # scaled, k = 1: 2301
        Reading("meter-1", "voltage", 230.0, t + 1, "V"),  # a whole float: k = 0, still a float
        Reading("meter-1", "energy", 123456, t + 1, "Wh"),  # an int stays an int
        Reading("meter-1", "ratio", 0.1 + 0.2, t + 1),  # needs all 64 bits: float64
        Reading("meter-1", "tilt", 2.0**-20, t + 1, "rad"),  # float32 holds it: float32
        Reading("meter-1", "offset", -0.0, t + 1),  # -0.0 keeps its sign: float32
        Reading("panel-2", "message", "Road works", t + 1.5, None, Quality.SUBSTITUTED),
        Reading("panel-2", "voltage", 24.5, t + 1.5, "V", Quality.SUBSTITUTED),
        Reading("cabinet", "door_open", True, t + 2, None, Quality.CLOCK_UNSYNCED),
    ]


def reading_json(r: Reading) -> dict[str, Any]:
    return {"device": r.device, "point": r.point, "value": r.value, "ts": r.ts,
            "unit": r.unit, "quality": Quality(r.quality).value}  # fmt: skip


def _vector(name: str, description: str, seq: int, readings: list[Reading], compress: bool,
            hist: bool = False) -> dict[str, Any]:  # fmt: skip
    key: SigningKey = gateway_key()
    payload = seal(
        key, gateway=GATEWAY, site=SITE, kind="telemetry", seq=seq, ts=POLL_MS / 1000 + 0.25,
        historical=hist, entries=[reading_entry(r) for r in readings], compress=compress,
    )  # fmt: skip
    outer = msgpack.unpackb(payload)
    body = outer["body"]
    fields = msgpack.unpackb(body)
    data = fields["data"]
    inflated = (
        zlib.decompressobj(zdict=DICTIONARY).decompress(data) if isinstance(data, bytes) else b""
    )
    block = msgpack.unpackb(inflated) if isinstance(data, bytes) else data
    return {
        "name": name,
        "description": description,
        "topic": f"{PREFIX}/{SITE}/{GATEWAY}/telemetry",
        "signer": {
            "seed_hex": GATEWAY_SEED.hex(),
            "public_key": key.public_text(),
            "key_id": key.key_id,
        },
        "context_hex": MESSAGE_CONTEXT.hex(),
        "readings": [reading_json(r) for r in readings],
        "compressed": isinstance(data, bytes),
        "block": plain(block),
        "body_hex": body.hex(),
        "signature_hex": outer["sig"].hex(),
        "payload_hex": payload.hex(),
        "sizes": {
            "readings": len(readings),
            "payload": len(payload),
            "body": len(body),
            "per_reading": round(len(payload) / len(readings), 2),
        },
    }


def build() -> dict[str, dict[str, Any]]:
    poll = street_poll()
    return {
        "street-poll": _vector(
            "street-poll",
            "One poll round of 17 lampposts x 17 points (289 readings), the block as it is.",
            100, poll, compress=False,
        ),
        "street-poll-deflate": _vector(
            "street-poll-deflate",
            "The same readings, sealed as the gateway sends them: the block deflated "
            "(zlib, level 6) because that is smaller.",
            101, poll, compress=True,
        ),
        "value-rules": _vector(
            "value-rules",
            "Every value rule: scaled floats, a whole float, an int, float64, float32, "
            "-0.0, text, the three qualities, three devices; from the backlog.",
            102, value_rules(), compress=False, hist=True,
        ),
    }  # fmt: skip


def vector_files() -> dict[str, str]:
    return {
        f"{name}.json": json.dumps(vector, indent=2, ensure_ascii=False) + "\n"
        for name, vector in build().items()
    }


def write() -> None:
    READINGS_DIR.mkdir(parents=True, exist_ok=True)
    for name, content in vector_files().items():
        (READINGS_DIR / name).write_text(content)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        print(__doc__)
        sys.exit(2)
    write()
    print(f"wrote {READINGS_DIR}")
