"""BTHome v2: the service data (UUID 0xFCD2) of a sensor's advertisement, both ways.

Format: https://bthome.io/format/ and https://bthome.io/encryption/. The payload is
a device-information byte (bit 0 encrypted, bit 2 trigger-based, bits 5-7 version;
bits 1, 3 and 4 reserved: a frame that sets one is refused)
followed by objects: one id byte, then a little-endian value whose size and
factor the id defines. Encrypted payloads carry AES-CCM ciphertext, a 4-byte
counter and a 4-byte MIC; the nonce is MAC + UUID (D2 FC) + info byte + counter.

The object table below is data, transcribed from the format page (cross-checked
with the `bthome-ble` project's `const.py`). An object id we do not know ends
decoding (its size is unknown), keeping what came before it: objects are sent in
ascending id order, so a newer sensor's extra objects come last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from cityedge.sdk.model import Value

UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"
"""The BTHome service-data UUID as bleak spells it (16-bit 0xFCD2, little-endian D2 FC)."""
_UUID_BYTES = b"\xd2\xfc"
MAX_PAYLOAD = 255  # an extended advertisement's service data cannot be longer
# Device-info bits 1, 3 and 4 are reserved in v2: a frame that sets one is laid out
# in a way we do not know (a draft firmware put its MAC after the info byte; read as
# objects, those bytes made -294 °C), so it is refused rather than decoded wrong.
RESERVED_INFO_BITS = 0b0001_1010

Kind = Literal["number", "binary", "packet_id", "button", "dimmer", "text", "raw", "timestamp"]


@dataclass(frozen=True, slots=True)
class ObjectType:
    object_id: int
    point: str
    kind: Kind
    size: int  # bytes of value; 0 = a length byte comes first (text, raw)
    factor: float = 1
    unit: str | None = None
    signed: bool = False

    @property
    def decimals(self) -> int:
        """Digits to round a scaled value to, so 2506 × 0.01 reads 25.06, not 25.060000000000002."""
        text = f"{self.factor:.10f}".rstrip("0")
        return len(text.split(".")[1]) if "." in text else 0


def _num(
    oid: int,
    point: str,
    size: int,
    factor: float = 1,
    unit: str | None = None,
    *,
    signed: bool = False,
) -> ObjectType:
    return ObjectType(oid, point, "number", size, factor, unit, signed)


def _bin(oid: int, point: str) -> ObjectType:
    return ObjectType(oid, point, "binary", 1)


_DEG_C, _PCT, _UGM3, _L, _M3 = "°C", "%", "µg/m³", "L", "m³"

OBJECT_TYPES: dict[int, ObjectType] = {
    t.object_id: t
    for t in (
        ObjectType(0x00, "packet_id", "packet_id", 1),
        _num(0x01, "battery", 1, 1, _PCT),
        _num(0x02, "temperature", 2, 0.01, _DEG_C, signed=True),
        _num(0x03, "humidity", 2, 0.01, _PCT),
        _num(0x04, "pressure", 3, 0.01, "hPa"),
        _num(0x05, "illuminance", 3, 0.01, "lx"),
        _num(0x06, "mass_kg", 2, 0.01, "kg"),
        _num(0x07, "mass_lb", 2, 0.01, "lb"),
        _num(0x08, "dew_point", 2, 0.01, _DEG_C, signed=True),
        _num(0x09, "count", 1),
        _num(0x0A, "energy", 3, 0.001, "kWh"),
        _num(0x0B, "power", 3, 0.01, "W"),
        _num(0x0C, "voltage", 2, 0.001, "V"),
        _num(0x0D, "pm25", 2, 1, _UGM3),
        _num(0x0E, "pm10", 2, 1, _UGM3),
        _bin(0x0F, "generic"),
        _bin(0x10, "power_on"),
        _bin(0x11, "opening"),
        _num(0x12, "co2", 2, 1, "ppm"),
        _num(0x13, "tvoc", 2, 1, _UGM3),
        _num(0x14, "moisture", 2, 0.01, _PCT),
        _bin(0x15, "battery_low"),
        _bin(0x16, "battery_charging"),
        _bin(0x17, "carbon_monoxide"),
        _bin(0x18, "cold"),
        _bin(0x19, "connectivity"),
        _bin(0x1A, "door"),
        _bin(0x1B, "garage_door"),
        _bin(0x1C, "gas_detected"),
        _bin(0x1D, "heat"),
        _bin(0x1E, "light"),
        _bin(0x1F, "lock"),
        _bin(0x20, "moisture_detected"),
        _bin(0x21, "motion"),
        _bin(0x22, "moving"),
        _bin(0x23, "occupancy"),
        _bin(0x24, "plug"),
        _bin(0x25, "presence"),
        _bin(0x26, "problem"),
        _bin(0x27, "running"),
        _bin(0x28, "safety"),
        _bin(0x29, "smoke"),
        _bin(0x2A, "sound"),
        _bin(0x2B, "tamper"),
        _bin(0x2C, "vibration"),
        _bin(0x2D, "window"),
        _num(0x2E, "humidity", 1, 1, _PCT),
        _num(0x2F, "moisture", 1, 1, _PCT),
        ObjectType(0x3A, "button", "button", 1),
        ObjectType(0x3C, "dimmer", "dimmer", 2),
        _num(0x3D, "count", 2),
        _num(0x3E, "count", 4),
        _num(0x3F, "rotation", 2, 0.1, "°", signed=True),  # tilt
        _num(0x40, "distance_mm", 2, 1, "mm"),
        _num(0x41, "distance_m", 2, 0.1, "m"),
        _num(0x42, "duration", 3, 0.001, "s"),
        _num(0x43, "current", 2, 0.001, "A"),
        _num(0x44, "speed", 2, 0.01, "m/s"),
        _num(0x45, "temperature", 2, 0.1, _DEG_C, signed=True),
        _num(0x46, "uv_index", 1, 0.1),
        _num(0x47, "volume", 2, 0.1, _L),
        _num(0x48, "volume_ml", 2, 1, "mL"),
        _num(0x49, "volume_flow_rate", 2, 0.001, "m³/h"),
        _num(0x4A, "voltage", 2, 0.1, "V"),
        _num(0x4B, "gas", 3, 0.001, _M3),
        _num(0x4C, "gas", 4, 0.001, _M3),
        _num(0x4D, "energy", 4, 0.001, "kWh"),
        _num(0x4E, "volume", 4, 0.001, _L),
        _num(0x4F, "water", 4, 0.001, _L),
        ObjectType(0x50, "timestamp", "timestamp", 4, unit="s"),
        _num(0x51, "acceleration", 2, 0.001, "m/s²"),
        _num(0x52, "gyroscope", 2, 0.001, "°/s"),
        ObjectType(0x53, "text", "text", 0),
        ObjectType(0x54, "raw", "raw", 0),
        _num(0x55, "volume_storage", 4, 0.001, _L),
        _num(0x56, "conductivity", 2, 1, "µS/cm"),
        _num(0x57, "temperature", 1, 1, _DEG_C, signed=True),
        _num(0x58, "temperature", 1, 0.35, _DEG_C, signed=True),
        _num(0x59, "count", 1, signed=True),
        _num(0x5A, "count", 2, signed=True),
        _num(0x5B, "count", 4, signed=True),
        _num(0x5C, "power", 4, 0.01, "W", signed=True),
        _num(0x5D, "current", 2, 0.001, "A", signed=True),
        _num(0x5E, "direction", 2, 0.01, "°"),
        _num(0x5F, "precipitation", 2, 0.1, "mm"),
        _num(0x60, "channel", 1),
        _num(0x61, "rotational_speed", 2, 1, "rpm"),
    )
}

POINT_NAMES: frozenset[str] = frozenset(
    t.point for t in OBJECT_TYPES.values() if t.kind not in ("packet_id", "button", "dimmer")
)
"""Names a BTHome sensor's readings can carry (a repeat in one packet gets `_2`, `_3`…)."""

BUTTON_ACTIONS = {
    0x01: "press",
    0x02: "double_press",
    0x03: "triple_press",
    0x04: "long_press",
    0x05: "long_double_press",
    0x06: "long_triple_press",
    0x80: "hold_press",
}
DIMMER_ACTIONS = {0x01: "rotate_left", 0x02: "rotate_right"}


class BTHomeError(ValueError):
    """A frame we cannot use; `reason` is a short stable word for health counters."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True, slots=True)
class Measurement:
    point: str
    value: Value
    unit: str | None
    object_id: int


@dataclass(frozen=True, slots=True)
class Trigger:
    """A button press or dimmer turn: something that happened, not a state."""

    point: str  # "button", "dimmer", "button_2"…
    action: str
    steps: int | None = None


@dataclass(frozen=True, slots=True)
class Packet:
    encrypted: bool
    trigger_based: bool  # the sensor sends on change only (a door contact), not on a period
    packet_id: int | None
    counter: int | None  # encrypted frames only: must grow (replay protection)
    measurements: tuple[Measurement, ...]
    triggers: tuple[Trigger, ...]
    unknown_object: int | None  # first object id we do not know; decoding stopped there


def decode(data: bytes, *, mac: bytes | None = None, bindkey: bytes | None = None) -> Packet:
    """Decode one BTHome v2 service-data value (the bytes after the UUID).

    `mac` (6 bytes, as printed: A4:C1:… → a4c1…) and `bindkey` (16 bytes) are needed
    for encrypted frames. A device configured with a key must send encrypted frames:
    a plain one is refused ("downgrade"), so nobody can forge its readings in clear.
    Raises `BTHomeError` and nothing else for any input.
    """
    if not data:
        raise BTHomeError("too_short", "empty service data")
    if len(data) > MAX_PAYLOAD:
        raise BTHomeError("too_long", f"{len(data)} bytes, at most {MAX_PAYLOAD}")
    info = data[0]
    version = info >> 5
    if version != 2:
        raise BTHomeError("version", f"BTHome version {version} (device info 0x{info:02x})")
    if info & RESERVED_INFO_BITS:
        bits = ", ".join(str(b) for b in range(8) if info & RESERVED_INFO_BITS & (1 << b))
        raise BTHomeError(
            "reserved",
            f"device info 0x{info:02x} sets reserved bit {bits}: a layout this decoder does "
            "not know (bit 1 was 'MAC included' in a BTHome v2 draft); refused, not guessed",
        )
    encrypted = bool(info & 0x01)
    counter: int | None = None
    if encrypted:
        payload, counter = _decrypt(data, mac, bindkey)
    elif bindkey is not None:
        raise BTHomeError("downgrade", "unencrypted frame from a sensor that has a bindkey")
    else:
        payload = data[1:]
    packet_id, measurements, triggers, unknown = _objects(payload)
    return Packet(encrypted, bool(info & 0x04), packet_id, counter, measurements, triggers, unknown)


def _decrypt(data: bytes, mac: bytes | None, bindkey: bytes | None) -> tuple[bytes, int]:
    if bindkey is None:
        raise BTHomeError("no_key", "encrypted frame but no bindkey configured")
    if len(bindkey) != 16:
        raise BTHomeError("bad_key", f"bindkey must be 16 bytes, got {len(bindkey)}")
    if mac is None or len(mac) != 6:
        raise BTHomeError("no_mac", "encrypted frame needs the sensor's 6-byte address")
    if len(data) < 1 + 8:  # info, counter, MIC; the ciphertext may be empty
        raise BTHomeError("too_short", f"encrypted frame of {len(data)} bytes")
    ciphertext, counter, mic = data[1:-8], data[-8:-4], data[-4:]
    nonce = mac + _UUID_BYTES + data[:1] + counter
    try:
        plain = AESCCM(bindkey, tag_length=4).decrypt(nonce, ciphertext + mic, None)
    except InvalidTag:
        raise BTHomeError("decrypt", "MIC mismatch: wrong bindkey or damaged frame") from None
    return plain, int.from_bytes(counter, "little")


def _objects(
    payload: bytes,
) -> tuple[int | None, tuple[Measurement, ...], tuple[Trigger, ...], int | None]:
    packet_id: int | None = None
    measurements: list[Measurement] = []
    triggers: list[Trigger] = []
    repeats: dict[str, int] = {}
    pos = 0
    end = len(payload)
    while pos < end:
        oid = payload[pos]
        kind = OBJECT_TYPES.get(oid)
        if kind is None:
            return packet_id, tuple(measurements), tuple(triggers), oid
        pos += 1
        size = kind.size
        if size == 0:  # length-prefixed
            if pos >= end:
                raise BTHomeError("truncated", f"object 0x{oid:02x} ({kind.point}) has no length")
            size = payload[pos]
            pos += 1
        if pos + size > end:
            raise BTHomeError(
                "truncated",
                f"object 0x{oid:02x} ({kind.point}) needs {size} bytes at offset {pos + 1}, "
                f"{end - pos} left",
            )
        raw = payload[pos : pos + size]
        pos += size
        if kind.kind == "packet_id":
            packet_id = raw[0]
            continue
        count = repeats[kind.point] = repeats.get(kind.point, 0) + 1
        point = kind.point if count == 1 else f"{kind.point}_{count}"
        if kind.kind in ("button", "dimmer"):
            trigger = _trigger(kind, point, raw)
            if trigger is not None:
                triggers.append(trigger)
            continue
        measurements.append(Measurement(point, _value(kind, raw), kind.unit, oid))
    return packet_id, tuple(measurements), tuple(triggers), None


def _value(kind: ObjectType, raw: bytes) -> Value:
    if kind.kind == "binary":
        return raw[0] != 0
    if kind.kind == "text":
        return raw.decode("utf-8", errors="replace")
    if kind.kind == "raw":
        return raw.hex()
    number = int.from_bytes(raw, "little", signed=kind.signed)
    if kind.factor == 1:
        return number
    return round(number * kind.factor, kind.decimals)


def _trigger(kind: ObjectType, point: str, raw: bytes) -> Trigger | None:
    code = raw[0]
    if code == 0:  # "none": the object is present but nothing happened
        return None
    if kind.kind == "button":
        return Trigger(point, BUTTON_ACTIONS.get(code, f"code_{code:#04x}"))
    return Trigger(point, DIMMER_ACTIONS.get(code, f"code_{code:#04x}"), steps=raw[1])


# --- the other direction: simulated sensors, tests and the benchmark -------------------

_BY_POINT: dict[str, ObjectType] = {}
for _t in OBJECT_TYPES.values():
    _BY_POINT.setdefault(_t.point, _t)  # the lowest id of a name is its usual encoding


def encode(
    objects: Sequence[tuple[int, Value]],
    *,
    packet_id: int | None = None,
    trigger_based: bool = False,
) -> bytes:
    """Unencrypted BTHome v2 service data for `(object_id, value)` pairs.

    Values are in engineering units (25.06 for 2506 × 0.01); binary objects take
    a bool, text a str, raw a hex str. Raises `ValueError` if a value does not fit.
    """
    out = bytearray([0x40 | (0x04 if trigger_based else 0)])
    if packet_id is not None:
        out += bytes([0x00, packet_id & 0xFF])
    for oid, value in objects:
        kind = OBJECT_TYPES[oid]
        out.append(oid)
        out += _encode_value(kind, value)
    return bytes(out)


def _encode_value(kind: ObjectType, value: Value) -> bytes:
    if kind.kind == "binary":
        return b"\x01" if value else b"\x00"
    if kind.kind in ("text", "raw"):
        raw = str(value).encode() if kind.kind == "text" else bytes.fromhex(str(value))
        if len(raw) > 255:
            raise ValueError(f"{kind.point}: {len(raw)} bytes, at most 255")
        return bytes([len(raw)]) + raw
    if isinstance(value, str):
        raise ValueError(f"{kind.point}: expected a number, got {value!r}")
    number = round(float(value) / kind.factor)
    try:
        return number.to_bytes(kind.size, "little", signed=kind.signed)
    except OverflowError:
        raise ValueError(f"{kind.point}: {value} does not fit in {kind.size} bytes") from None


def encrypt(service_data: bytes, *, mac: bytes, bindkey: bytes, counter: int) -> bytes:
    """Encrypt unencrypted BTHome v2 service data the way a sensor with `bindkey` does."""
    info = bytes([service_data[0] | 0x01])
    counter_bytes = counter.to_bytes(4, "little")
    nonce = mac + _UUID_BYTES + info + counter_bytes
    sealed = AESCCM(bindkey, tag_length=4).encrypt(nonce, service_data[1:], None)
    return info + sealed[:-4] + counter_bytes + sealed[-4:]


def point_type(point: str) -> ObjectType | None:
    """The object type behind a point name (`temperature_2` → temperature)."""
    base, _, suffix = point.rpartition("_")
    if suffix.isdigit() and base in _BY_POINT:
        return _BY_POINT[base]
    return _BY_POINT.get(point)
