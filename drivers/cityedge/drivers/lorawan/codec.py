"""The codec engine: what a decrypted FRMPayload (bytes + FPort) says, read by
its device type — Cayenne LPP records or a fixed byte layout.

Sensors in the street send anything: a payload we cannot read raises CodecError
naming the device type, the byte offset and what was expected, and nothing else.
"""

from __future__ import annotations

from cityedge.drivers.lorawan.devicetype import DecodedPoint, DeviceType
from cityedge.drivers.lorawan.encodings import (
    GPS_AXES,
    GPS_CODE,
    INT_TYPES,
    LPP_TYPES,
    decimals,
    is_whole,
)


class CodecError(ValueError):
    """A payload this device type cannot read: where it went wrong and what was expected."""

    def __init__(self, device_type: str, offset: int, detail: str) -> None:
        self.device_type = device_type
        self.offset = offset
        self.detail = detail
        super().__init__(f"{device_type}: byte {offset}: {detail}")


# --- decoding -----------------------------------------------------------------------


def decode(device_type: DeviceType, fport: int, payload: bytes) -> list[DecodedPoint]:
    """Readings in one uplink's FRMPayload; CodecError for anything else."""
    if not 1 <= fport <= 223:
        raise CodecError(device_type.name, 0, f"FPort {fport}: application ports are 1..223")
    if device_type.codec == "cayenne-lpp":
        if device_type.fports is not None and fport not in device_type.fports:
            raise CodecError(device_type.name, 0, f"FPort {fport}: {_ports(device_type.fports)}")
        return _decode_lpp(device_type, bytes(payload))
    return _decode_layout(device_type, fport, bytes(payload))


def _ports(ports: frozenset[int]) -> str:
    return "expected FPort " + " or ".join(str(p) for p in sorted(ports))


def _decode_lpp(dt: DeviceType, data: bytes) -> list[DecodedPoint]:
    if not data:
        raise CodecError(dt.name, 0, "empty payload: expected channel, type and data")
    names = dt.channels or {}
    out: list[DecodedPoint] = []
    seen: set[str] = set()
    at = 0
    while at < len(data):
        if at + 2 > len(data):
            raise CodecError(dt.name, at, "truncated: expected a channel byte and a type byte")
        channel, code = data[at], data[at + 1]
        if code == GPS_CODE:
            size = 9
            base = names.get((channel, code), f"gps_{channel}")
        elif code in LPP_TYPES:
            t = LPP_TYPES[code]
            size = t.data_size
            base = names.get((channel, code), f"{t.name}_{channel}")
        else:
            raise CodecError(dt.name, at + 1, f"unknown Cayenne LPP type {code} (0x{code:02X})")
        start = at + 2
        if start + size > len(data):
            what = "GPS" if code == GPS_CODE else LPP_TYPES[code].name
            raise CodecError(
                dt.name,
                start,
                f"truncated {what} on channel {channel}: "
                f"expected {size} data bytes, {len(data) - start} left",
            )
        if base in seen:
            raise CodecError(dt.name, at, f"channel {channel} type {code} repeated in one payload")
        seen.add(base)
        chunk = data[start : start + size]
        if code == GPS_CODE:
            for i, (axis, resolution, unit) in enumerate(GPS_AXES):
                raw = int.from_bytes(chunk[i * 3 : i * 3 + 3], "big", signed=True)
                out.append(
                    DecodedPoint(
                        f"{base}_{axis}", round(raw * resolution, decimals(resolution)), unit
                    )
                )
        else:
            t = LPP_TYPES[code]
            axes = t.axes or ("",)
            for i, axis in enumerate(axes):
                raw = int.from_bytes(chunk[i * t.size : (i + 1) * t.size], "big", signed=t.signed)
                value: int | float = (
                    raw * int(t.resolution)
                    if t.kind == "int"
                    else round(raw * t.resolution, decimals(t.resolution))
                )
                out.append(DecodedPoint(f"{base}_{axis}" if axis else base, value, t.unit))
        at = start + size
    return out


def _decode_layout(dt: DeviceType, fport: int, data: bytes) -> list[DecodedPoint]:
    frame = next((f for f in dt.frames if f.fports is None or fport in f.fports), None)
    if frame is None:
        ports = frozenset(p for f in dt.frames for p in (f.fports or ()))
        raise CodecError(dt.name, 0, f"FPort {fport}: no layout for it, {_ports(ports)}")
    if len(data) != frame.length:
        # Say which field the payload stops in: more useful than two lengths alone.
        at = 0
        for f in frame.fields:
            if at + f.size > len(data):
                raise CodecError(
                    dt.name,
                    at,
                    f"truncated at {f.name} ({f.type}): expected {frame.length} bytes "
                    f"on FPort {fport}, got {len(data)}",
                )
            at += f.size
        raise CodecError(
            dt.name,
            frame.length,
            f"wrong length: expected {frame.length} bytes on FPort {fport}, got {len(data)}",
        )
    out: list[DecodedPoint] = []
    values: dict[str, float] = {}
    at = 0
    for f in frame.fields:
        if f.type == "skip":
            at += f.size
            continue
        spec = INT_TYPES[f.type]
        raw = int.from_bytes(data[at : at + f.size], spec.order, signed=spec.signed)
        at += f.size
        for b in f.bits:
            bits = (raw >> b.bit) & ((1 << b.width) - 1)
            out.append(DecodedPoint(b.name, bool(bits) if b.width == 1 else bits, None))
        if f.missing is not None and raw == f.missing:
            continue
        value = _scaled(raw, f.scale, f.offset)
        values[f.name] = value
        if f.emit:
            out.append(DecodedPoint(f.name, value, f.unit))
    for d in frame.derivations:
        if d.source in values:
            out.append(DecodedPoint(d.name, d.compute(values[d.source]), d.unit))
    return out


def _scaled(raw: int, scale: float, offset: float) -> int | float:
    if is_whole(scale) and is_whole(offset):
        return raw * int(scale) + int(offset)
    return round(raw * scale + offset, max(decimals(scale), decimals(offset)))
