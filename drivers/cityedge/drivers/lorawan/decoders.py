"""Device-type files: one TOML file per LoRaWAN device type (config/lorawan/,
format in docs/lorawan-devices.md) → a validated `DeviceType`, or a
`DeviceTypeError` listing every problem of the file.

A file names its codec (`cayenne-lpp`, or `layout`: fixed byte layouts per
FPort group, of integer fields, flag bits and named derivations), its expected
report interval and its alarms. Decoding payloads is `codec`'s job; the
vocabulary a file may use is in `encodings` and `derivations`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from cityedge.drivers.lorawan.derivations import FUNCTIONS
from cityedge.drivers.lorawan.devicetype import (
    Alarm,
    Bit,
    Derivation,
    DeviceType,
    Field_,
    Frame,
    Point,
)
from cityedge.drivers.lorawan.encodings import (
    GPS_AXES,
    GPS_CODE,
    INT_TYPES,
    LPP_BY_NAME,
    LPP_TYPES,
    FieldType,
    is_whole,
)
from cityedge.sdk.driver import SHIPPED_CONFIG_DIR
from cityedge.sdk.problems import FileProblems, error_lines
from cityedge.sdk.tables import Field, Invalid, Table, check_table

SHIPPED_DEVICE_TYPES = SHIPPED_CONFIG_DIR / "lorawan"

_NAME = r"^[a-z][a-z0-9_]*$"
_TYPE_NAME = r"^[a-z0-9][a-z0-9-]*$"
_EVENT = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"


DeviceTypeError = FileProblems  # every problem of one file, as the config reports them


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
            code, axes = GPS_CODE, [(a, "float", u) for a, _, u in GPS_AXES]
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
        kind = "int" if is_whole(f.scale) and is_whole(f.offset) else "float"
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
        ("gps", tuple(a for a, _, _ in GPS_AXES)),
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
