"""LoRaWAN payload codecs as data: what a decrypted FRMPayload (bytes + FPort) says.

A device type is one TOML file (config/lorawan/, format in docs/lorawan-devices.md)
naming its codec, its expected report interval and its alarms:

- `cayenne-lpp`: Cayenne Low Power Payload, records of channel, type, data. A
  reading is named `<type>_<channel>` (`temperature_3`) unless the file maps that
  channel and type to a name; multi-value types add an axis (`accelerometer_6_x`).
- `layout`: fixed byte layouts, one per FPort group, of integer fields (scale,
  offset, unit), flag bits inside them, and a few named derivations where a value
  needs arithmetic (`fill_percent` from an ultrasonic distance and the bin depth).

Sensors in the street send anything: a payload we cannot read raises CodecError
naming the device type, the byte offset and what was expected, and nothing else.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from cityedge.sdk.driver import SHIPPED_CONFIG_DIR
from cityedge.sdk.model import Value
from cityedge.sdk.problems import FileProblems, error_lines
from cityedge.sdk.tables import Field, Invalid, Table, check_table

SHIPPED_DEVICE_TYPES = SHIPPED_CONFIG_DIR / "lorawan"

_NAME = r"^[a-z][a-z0-9_]*$"
_TYPE_NAME = r"^[a-z0-9][a-z0-9-]*$"
_EVENT = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"


class CodecError(ValueError):
    """A payload this device type cannot read: where it went wrong and what was expected."""

    def __init__(self, device_type: str, offset: int, detail: str) -> None:
        self.device_type = device_type
        self.offset = offset
        self.detail = detail
        super().__init__(f"{device_type}: byte {offset}: {detail}")


DeviceTypeError = FileProblems  # every problem of one file, as the config reports them


# --- integer field types ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Int:
    size: int
    signed: bool
    order: Literal["big", "little"]


INT_TYPES: dict[str, _Int] = {
    "u8": _Int(1, False, "big"),
    "s8": _Int(1, True, "big"),
    "u16be": _Int(2, False, "big"),
    "u16le": _Int(2, False, "little"),
    "s16be": _Int(2, True, "big"),
    "s16le": _Int(2, True, "little"),
    "u24be": _Int(3, False, "big"),
    "u24le": _Int(3, False, "little"),
    "s24be": _Int(3, True, "big"),
    "s24le": _Int(3, True, "little"),
    "u32be": _Int(4, False, "big"),
    "u32le": _Int(4, False, "little"),
    "s32be": _Int(4, True, "big"),
    "s32le": _Int(4, True, "little"),
}
FieldType = Literal[
    "u8", "s8", "u16be", "u16le", "s16be", "s16le", "u24be", "u24le", "s24be", "s24le",
    "u32be", "u32le", "s32be", "s32le", "skip",
]  # fmt: skip


def _decimals(number: float) -> int:
    """Digits a scaled value is rounded to, so 272 × 0.1 reads 27.2, not 27.200000000000003."""
    text = f"{abs(number):.10f}".rstrip("0")
    return len(text.split(".")[1]) if "." in text else 0


def _is_whole(number: float) -> bool:
    return float(number).is_integer()


# --- Cayenne LPP --------------------------------------------------------------------
# Types from the Cayenne LPP documentation (docs.mydevices.com, "Cayenne Low Power
# Payload") and the extended set of the widely used CayenneLPP Arduino library
# (ElectronicCats). Every value is big-endian.


@dataclass(frozen=True, slots=True)
class LppType:
    code: int
    name: str
    size: int  # bytes per axis
    signed: bool
    resolution: float
    unit: str | None
    axes: tuple[str, ...] = ()  # multi-value types: one reading per axis

    @property
    def data_size(self) -> int:
        return self.size * max(1, len(self.axes))

    @property
    def kind(self) -> str:
        return "int" if _is_whole(self.resolution) else "float"


_AXES = ("x", "y", "z")
LPP_TYPES: dict[int, LppType] = {
    t.code: t
    for t in (
        LppType(0, "digital_input", 1, False, 1, None),
        LppType(1, "digital_output", 1, False, 1, None),
        LppType(2, "analog_input", 2, True, 0.01, None),
        LppType(3, "analog_output", 2, True, 0.01, None),
        LppType(100, "generic", 4, False, 1, None),
        LppType(101, "illuminance", 2, False, 1, "lx"),
        LppType(102, "presence", 1, False, 1, None),
        LppType(103, "temperature", 2, True, 0.1, "°C"),
        LppType(104, "humidity", 1, False, 0.5, "%"),
        LppType(113, "accelerometer", 2, True, 0.001, "g", _AXES),
        LppType(115, "barometer", 2, False, 0.1, "hPa"),
        LppType(116, "voltage", 2, False, 0.01, "V"),
        LppType(117, "current", 2, False, 0.001, "A"),
        LppType(118, "frequency", 4, False, 1, "Hz"),
        LppType(120, "percentage", 1, False, 1, "%"),
        LppType(121, "altitude", 2, True, 1, "m"),
        LppType(125, "concentration", 2, False, 1, "ppm"),
        LppType(128, "power", 2, False, 1, "W"),
        LppType(130, "distance", 4, False, 0.001, "m"),
        LppType(131, "energy", 4, False, 0.001, "kWh"),
        LppType(132, "direction", 2, False, 1, "°"),
        LppType(133, "unixtime", 4, False, 1, "s"),
        LppType(134, "gyrometer", 2, True, 0.01, "°/s", _AXES),
        LppType(135, "colour", 1, False, 1, None, ("r", "g", "b")),
        LppType(142, "switch", 1, False, 1, None),
    )
}
LPP_BY_NAME: dict[str, LppType] = {t.name: t for t in LPP_TYPES.values()}
# GPS packs three axes of different resolution into 9 bytes; the table above
# cannot say that, so it has its own decoder.
_GPS_CODE = 136
_GPS_AXES = (("latitude", 0.0001, "°"), ("longitude", 0.0001, "°"), ("altitude", 0.01, "m"))


# --- the validated device type ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Point:
    name: str
    unit: str | None
    kind: str  # "bool" | "int" | "float", as agent.model.PointInfo


@dataclass(frozen=True, slots=True)
class DecodedPoint:
    name: str
    value: Value
    unit: str | None


@dataclass(frozen=True, slots=True)
class Alarm:
    point: str
    event: str  # dotted and stable: `bin.full`
    severity: str  # "info" | "warning" | "critical"
    at_or_above: float | None = None
    at_or_below: float | None = None
    equals: float | bool | None = None


def breached(alarm: Alarm, value: Value) -> bool:
    """Whether one value is in the alarm's range; text never is, nor is NaN."""
    if isinstance(value, str):
        return False
    if alarm.equals is not None:
        return value == alarm.equals
    if isinstance(value, bool) or math.isnan(value):
        return False  # validation keeps thresholds off flags; NaN compares false anyway
    if alarm.at_or_above is not None:
        return value >= alarm.at_or_above
    return alarm.at_or_below is not None and value <= alarm.at_or_below


@dataclass(frozen=True, slots=True)
class Bit:
    name: str
    bit: int
    width: int


@dataclass(frozen=True, slots=True)
class Field_:
    name: str
    type: str
    size: int
    scale: float
    offset: float
    unit: str | None
    emit: bool  # False: read only for its bits or a derivation
    missing: int | None  # raw value meaning "no measurement": the point is left out
    bits: tuple[Bit, ...]


@dataclass(frozen=True, slots=True)
class Derivation:
    name: str
    function: str
    source: str
    unit: str | None
    compute: Callable[[float], float]


@dataclass(frozen=True, slots=True)
class Frame:
    fports: frozenset[int] | None  # None: any application port
    fields: tuple[Field_, ...]
    derivations: tuple[Derivation, ...]

    @property
    def length(self) -> int:
        return sum(f.size for f in self.fields)


@dataclass(frozen=True, slots=True)
class DeviceType:
    name: str
    description: str
    codec: str  # "cayenne-lpp" | "layout"
    interval_s: float
    points: tuple[Point, ...]  # cayenne-lpp: only mapped channels; others appear by default name
    alarms: tuple[Alarm, ...]
    source: Path | None = None
    frames: tuple[Frame, ...] = ()  # layout
    channels: Mapping[tuple[int, int], str] | None = None  # cayenne-lpp: (channel, type) -> name
    fports: frozenset[int] | None = None  # cayenne-lpp: accepted ports, None: any


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
        if code == _GPS_CODE:
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
            what = "GPS" if code == _GPS_CODE else LPP_TYPES[code].name
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
        if code == _GPS_CODE:
            for i, (axis, resolution, unit) in enumerate(_GPS_AXES):
                raw = int.from_bytes(chunk[i * 3 : i * 3 + 3], "big", signed=True)
                out.append(
                    DecodedPoint(
                        f"{base}_{axis}", round(raw * resolution, _decimals(resolution)), unit
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
                    else round(raw * t.resolution, _decimals(t.resolution))
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
    if _is_whole(scale) and _is_whole(offset):
        return raw * int(scale) + int(offset)
    return round(raw * scale + offset, max(_decimals(scale), _decimals(offset)))


# --- derivations: the only arithmetic a device type may ask for -------------------------


@dataclass(frozen=True, slots=True)
class _Function:
    source_unit: str
    unit: str
    parameters: tuple[str, ...]
    build: Callable[[Mapping[str, float]], Callable[[float], float]]
    check: Callable[[Mapping[str, float]], str | None]


def _clamp_percent(value: float) -> float:
    return round(min(100.0, max(0.0, value)), 1)


def _fill_percent(p: Mapping[str, float]) -> Callable[[float], float]:
    depth = p["bin_depth_mm"]
    # The sensor sits in the lid looking down: an empty bin echoes off its floor.
    return lambda distance: _clamp_percent((depth - distance) / depth * 100.0)


def _battery_percent(p: Mapping[str, float]) -> Callable[[float], float]:
    empty, full = p["battery_empty_v"], p["battery_full_v"]
    return lambda volts: _clamp_percent((volts - empty) / (full - empty) * 100.0)


FUNCTIONS: dict[str, _Function] = {
    "fill_percent": _Function(
        "mm",
        "%",
        ("bin_depth_mm",),
        _fill_percent,
        lambda p: None if p["bin_depth_mm"] > 0 else "bin_depth_mm must be above 0",
    ),
    "battery_percent": _Function(
        "V",
        "%",
        ("battery_empty_v", "battery_full_v"),
        _battery_percent,
        lambda p: (
            None
            if p["battery_full_v"] > p["battery_empty_v"]
            else "battery_full_v must be above battery_empty_v"
        ),
    ),
}


# --- the TOML schema ----------------------------------------------------------------


_Port = Annotated[int, Field(ge=1, le=223)]


class _BitSpec(Table):
    name: str = Field(min_length=1, max_length=64, pattern=_NAME)
    bit: Annotated[int, Field(ge=0, le=31)]
    width: Annotated[int, Field(ge=1, le=16)] = 1  # 1: a flag (bool), more: a small number


class _FieldSpec(Table):
    name: str = Field(min_length=1, max_length=64, pattern=_NAME)
    type: FieldType
    size: Annotated[int, Field(ge=1, le=64)] | None = None  # only for skip
    scale: float = Field(default=1.0, allow_inf_nan=False)
    offset: float = Field(default=0.0, allow_inf_nan=False)
    unit: str | None = Field(default=None, max_length=16)
    emit: bool = True
    missing: int | None = None
    bits: list[_BitSpec] = Field(default_factory=list, max_length=32)
    description: str = ""


class _DeriveSpec(Table):
    name: str = Field(min_length=1, max_length=64, pattern=_NAME)
    function: Literal["fill_percent", "battery_percent"]
    source: str = Field(min_length=1, max_length=64)
    description: str = ""


class _FrameSpec(Table):
    fport: list[_Port] | None = Field(default=None, min_length=1)
    field: list[_FieldSpec] = Field(min_length=1, max_length=64)
    derive: list[_DeriveSpec] = Field(default_factory=list, max_length=16)
    description: str = ""


class _ChannelSpec(Table):
    channel: Annotated[int, Field(ge=0, le=255)]
    type: str
    name: str = Field(min_length=1, max_length=64, pattern=_NAME)


class _AlarmSpec(Table):
    point: str = Field(min_length=1, max_length=64)
    event: str = Field(min_length=3, max_length=64, pattern=_EVENT)
    severity: Literal["info", "warning", "critical"] = "warning"
    at_or_above: float | None = Field(default=None, allow_inf_nan=False)
    at_or_below: float | None = Field(default=None, allow_inf_nan=False)
    equals: bool | float | None = Field(default=None, allow_inf_nan=False)

    @check_table
    def _one_condition(self) -> None:
        given = [self.at_or_above, self.at_or_below, self.equals]
        if sum(v is not None for v in given) != 1:
            raise ValueError("give exactly one of at_or_above, at_or_below, equals")


class _DeviceTypeSpec(Table):
    name: str = Field(min_length=1, max_length=64, pattern=_TYPE_NAME)
    description: str = ""
    codec: Literal["cayenne-lpp", "layout"]
    interval_s: Annotated[float, Field(gt=0, le=7 * 86400)]
    fport: list[_Port] | None = Field(default=None, min_length=1)  # cayenne-lpp only
    parameters: dict[str, Annotated[float, Field(allow_inf_nan=False)]] = Field(
        default_factory=dict
    )
    channel: list[_ChannelSpec] = Field(default_factory=list, max_length=256)
    frame: list[_FrameSpec] = Field(default_factory=list, max_length=16)
    alarm: list[_AlarmSpec] = Field(default_factory=list, max_length=64)


# --- parsing ------------------------------------------------------------------------


def parse_device_type(raw: Mapping[str, Any], source: Path | None = None) -> DeviceType:
    """Validate a parsed device-type document; DeviceTypeError lists every problem."""
    where_from = str(source) if source is not None else "<device type>"
    try:
        spec = _DeviceTypeSpec.parse(raw)
    except Invalid as err:
        raise DeviceTypeError(where_from, error_lines(err)) from None
    problems: list[str] = []
    if source is not None and source.stem != spec.name:
        problems.append(f"name: {spec.name!r} differs from the file name {source.name!r}")
    points: dict[str, Point] = {}
    frames: tuple[Frame, ...] = ()
    channels: dict[tuple[int, int], str] | None = None
    if spec.codec == "cayenne-lpp":
        if spec.frame:
            problems.append("frame: only a layout codec has frames (codec is cayenne-lpp)")
        channels = _lpp_channels(spec.channel, points, problems)
    else:
        if spec.channel:
            problems.append("channel: only the cayenne-lpp codec maps channels")
        if spec.fport:
            problems.append("fport: a layout codec selects ports per frame (frame[].fport)")
        if not spec.frame:
            problems.append("frame: a layout codec needs at least one [[frame]]")
        frames = _frames(spec, points, problems)
    used = {p for f in spec.frame for d in f.derive for p in FUNCTIONS[d.function].parameters}
    for key in spec.parameters:
        if key not in used:
            problems.append(f"parameters.{key}: no derivation of this type uses it")
    alarms = _alarms(spec, points, problems)
    if problems:
        raise DeviceTypeError(where_from, problems)
    return DeviceType(
        name=spec.name,
        description=spec.description,
        codec=spec.codec,
        interval_s=spec.interval_s,
        points=tuple(points.values()),
        alarms=alarms,
        source=source,
        frames=frames,
        channels=channels,
        fports=frozenset(spec.fport) if spec.fport else None,
    )


def _lpp_channels(
    specs: Sequence[_ChannelSpec], points: dict[str, Point], problems: list[str]
) -> dict[tuple[int, int], str]:
    channels: dict[tuple[int, int], str] = {}
    for i, c in enumerate(specs):
        where = f"channel[{i}]"
        axes: list[tuple[str, str, str | None]]
        if c.type == "gps":
            code, axes = _GPS_CODE, [(a, "float", u) for a, _, u in _GPS_AXES]
        elif c.type in LPP_BY_NAME:
            t = LPP_BY_NAME[c.type]
            code = t.code
            axes = [(a, t.kind, t.unit) for a in t.axes] or [("", t.kind, t.unit)]
        else:
            known = ", ".join(sorted([*LPP_BY_NAME, "gps"]))
            problems.append(f"{where}.type: unknown Cayenne LPP type {c.type!r} (known: {known})")
            continue
        if (c.channel, code) in channels:
            problems.append(f"{where}: channel {c.channel} {c.type} is already mapped")
            continue
        channels[(c.channel, code)] = c.name
        for axis, kind, unit in axes:
            _add_point(
                points, Point(f"{c.name}_{axis}" if axis else c.name, unit, kind), where, problems
            )
    return channels


def _frames(
    spec: _DeviceTypeSpec, points: dict[str, Point], problems: list[str]
) -> tuple[Frame, ...]:
    frames: list[Frame] = []
    any_port_at: int | None = None
    claimed: dict[int, int] = {}
    for fi, fs in enumerate(spec.frame):
        here = f"frame[{fi}]"
        if any_port_at is not None:
            problems.append(f"{here}: unreachable, frame[{any_port_at}] takes every FPort")
        if fs.fport is None:
            any_port_at = fi if any_port_at is None else any_port_at
        for port in fs.fport or ():
            if port in claimed:
                problems.append(f"{here}.fport: FPort {port} is already frame[{claimed[port]}]'s")
            claimed.setdefault(port, fi)
        fields: list[Field_] = []
        values: dict[str, str | None] = {}  # field name -> unit, for derivations
        for i, f in enumerate(fs.field):
            fields.append(_field(f, f"{here}.field[{i}]", points, values, problems))
        derivations: list[Derivation] = []
        for i, d in enumerate(fs.derive):
            made = _derivation(d, f"{here}.derive[{i}]", spec.parameters, values, problems)
            if made is not None:
                derivations.append(made)
            # Declared even when broken, so that its alarms do not report a second problem.
            unit = FUNCTIONS[d.function].unit
            _add_point(points, Point(d.name, unit, "float"), f"{here}.derive[{i}]", problems)
        frames.append(
            Frame(frozenset(fs.fport) if fs.fport else None, tuple(fields), tuple(derivations))
        )
    return tuple(frames)


def _field(
    f: _FieldSpec,
    where: str,
    points: dict[str, Point],
    values: dict[str, str | None],
    problems: list[str],
) -> Field_:
    if f.type == "skip":
        if f.size is None:
            problems.append(f"{where}.size: a skip field needs its size in bytes")
        if f.bits or f.missing is not None or f.unit:
            problems.append(f"{where}: a skip field has no bits, missing or unit")
        return Field_(f.name, "skip", f.size or 1, 1, 0, None, False, None, ())
    spec = INT_TYPES[f.type]
    if f.size is not None and f.size != spec.size:
        problems.append(f"{where}.size: {f.type} is {spec.size} bytes, not {f.size}")
    if f.scale == 0:
        problems.append(f"{where}.scale: must not be 0")
    low = -(1 << (spec.size * 8 - 1)) if spec.signed else 0
    high = (1 << (spec.size * 8 - int(spec.signed))) - 1
    if f.missing is not None and not low <= f.missing <= high:
        problems.append(f"{where}.missing: {f.missing} is outside {f.type} ({low}..{high})")
    bits: list[Bit] = []
    for j, b in enumerate(f.bits):
        if b.bit + b.width > spec.size * 8:
            problems.append(
                f"{where}.bits[{j}]: bits {b.bit}..{b.bit + b.width - 1} are outside {f.type}"
            )
            continue
        bits.append(Bit(b.name, b.bit, b.width))
        _add_point(
            points,
            Point(b.name, None, "bool" if b.width == 1 else "int"),
            f"{where}.bits[{j}]",
            problems,
        )
    if f.name in values:
        problems.append(f"{where}.name: {f.name!r} is already a field of this frame")
    if f.emit:
        kind = "int" if _is_whole(f.scale) and _is_whole(f.offset) else "float"
        _add_point(points, Point(f.name, f.unit, kind), where, problems)
    values[f.name] = f.unit
    return Field_(
        f.name, f.type, spec.size, f.scale, f.offset, f.unit, f.emit, f.missing, tuple(bits)
    )


def _derivation(
    d: _DeriveSpec,
    where: str,
    parameters: Mapping[str, float],
    values: Mapping[str, str | None],
    problems: list[str],
) -> Derivation | None:
    fn = FUNCTIONS[d.function]
    ok = True
    if d.source not in values:
        problems.append(f"{where}.source: {d.source!r} is not a field of this frame")
        ok = False
    elif values[d.source] != fn.source_unit:
        problems.append(
            f"{where}.source: {d.function} reads {fn.source_unit}, "
            f"{d.source!r} is in {values[d.source]!r}"
        )
        ok = False
    absent = [p for p in fn.parameters if p not in parameters]
    if absent:
        problems.append(f"parameters: {d.function} ({where}) needs {', '.join(absent)}")
        return None
    wrong = fn.check(parameters)
    if wrong:
        problems.append(f"parameters: {wrong}")
        return None
    return Derivation(d.name, d.function, d.source, fn.unit, fn.build(parameters)) if ok else None


def _add_point(points: dict[str, Point], point: Point, where: str, problems: list[str]) -> None:
    known = points.get(point.name)
    if known is not None and known != point:
        # The same name in two frames is fine (a heartbeat repeats the status
        # byte) as long as it means the same thing.
        problems.append(f"{where}: point {point.name!r} is already declared with another unit/kind")
    points.setdefault(point.name, point)


def _alarms(
    spec: _DeviceTypeSpec, points: Mapping[str, Point], problems: list[str]
) -> tuple[Alarm, ...]:
    out: list[Alarm] = []
    for i, a in enumerate(spec.alarm):
        where = f"alarm[{i}]"
        point = points.get(a.point)
        if point is None and not (spec.codec == "cayenne-lpp" and _lpp_default_name(a.point)):
            problems.append(f"{where}.point: {a.point!r} is not a point of {spec.name}")
            continue
        if point is not None and point.kind == "bool" and a.equals is None:
            problems.append(f"{where}: {a.point!r} is a flag; use equals = true or false")
            continue
        out.append(Alarm(a.point, a.event, a.severity, a.at_or_above, a.at_or_below, a.equals))
    return tuple(out)


def _lpp_default_name(name: str) -> bool:
    """`temperature_3`, `accelerometer_6_x`, `gps_1_latitude`: a name LPP decoding can give."""
    for type_name, axes in [
        *((t.name, t.axes) for t in LPP_TYPES.values()),
        ("gps", tuple(a for a, _, _ in _GPS_AXES)),
    ]:
        rest = name.removeprefix(type_name + "_")
        if rest == name:
            continue
        channel, _, axis = rest.partition("_")
        if (
            channel.isascii()
            and channel.isdigit()
            and int(channel) <= 255
            and (axis in axes if axes else not axis)
        ):
            return True
    return False


# --- loading files ------------------------------------------------------------------


def load_device_type(path: Path) -> DeviceType:
    """One device-type TOML file; DeviceTypeError names the file and every bad key."""
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except OSError as err:
        raise DeviceTypeError(str(path), [f"cannot read: {err.strerror or err}"]) from None
    except tomllib.TOMLDecodeError as err:
        raise DeviceTypeError(str(path), [f"not valid TOML: {err}"]) from None
    except UnicodeDecodeError:
        raise DeviceTypeError(str(path), ["not valid TOML: not UTF-8 text"]) from None
    return parse_device_type(raw, path)


def load_device_types(dirs: Sequence[Path] = (SHIPPED_DEVICE_TYPES,)) -> dict[str, DeviceType]:
    """Every `*.toml` of the folders, by name; a later folder's type replaces an earlier one's.

    That order lets a site folder override a shipped type (another bin depth)
    without editing config/lorawan/.
    """
    types: dict[str, DeviceType] = {}
    for folder in dirs:
        if not folder.is_dir():
            raise DeviceTypeError(str(folder), ["not a folder of device types"])
        for path in sorted(folder.glob("*.toml")):
            dt = load_device_type(path)
            types[dt.name] = dt
    return types
