"""Device profiles: a Modbus device type as data (TOML), validated loudly.

A profile is one TOML file: a `[device]` table (type name, request limits,
default byte/word order, quirks) and `[[points]]`. Every problem is reported
at once, each naming the file and the key path (`points[3].type: ...`).
docs/modbus.md describes every key; config/profiles/ holds the shipped ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from cityedge.drivers.modbus.codec import encode
from cityedge.drivers.modbus.planner import ReadRequest, plan
from cityedge.drivers.modbus.points import DataType, Limits, Order, Point, RegisterKind
from cityedge.sdk.driver import SHIPPED_CONFIG_DIR
from cityedge.sdk.model import InvalidValue, PointAccess
from cityedge.sdk.problems import FileProblems, error_lines
from cityedge.sdk.tables import Field, Invalid, Table
from cityedge.sdk.tomlfile import TomlFiles

SHIPPED_PROFILES = SHIPPED_CONFIG_DIR / "profiles"

_NAME = r"^[a-z][a-z0-9_]*$"
_EVENT_KIND = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"


ProfileError = FileProblems  # every problem of one file, as the config reports them


# --- the TOML schema ----------------------------------------------------------------


class _DeviceSpec(Table):
    type: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    description: str = ""
    max_registers: Annotated[int, Field(ge=1, le=125)] = 125
    max_bits: Annotated[int, Field(ge=1, le=2000)] = 2000
    max_gap: Annotated[int, Field(ge=0, le=2000)] = 10
    byte_order: Order = Order.BIG
    word_order: Order = Order.BIG
    # quirks
    address_base: Literal[0, 1] = 0  # 1: addresses are written as in manuals counting from 1
    merge_requests: bool = True  # false: one request per point
    write_multiple: bool = False  # true: function code 16 even for one register
    request_pause: Annotated[float, Field(ge=0, le=5)] = 0.0  # seconds after each request


class _PointSpec(Table):
    name: str = Field(min_length=1, max_length=64, pattern=_NAME)
    kind: RegisterKind = Field(alias="register")  # the TOML key; `kind` reads better here
    address: Annotated[int, Field(ge=0, le=65536)]
    type: DataType | None = None  # default: bool for coils/discrete, uint16 for registers
    count: Annotated[int, Field(ge=1, le=125)] | None = None  # cross-check of the type's size
    bit: int | None = None
    byte_order: Order | None = None
    word_order: Order | None = None
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = Field(default=None, max_length=16)
    access: PointAccess = PointAccess.READ
    minimum: float | None = Field(default=None, alias="min")
    maximum: float | None = Field(default=None, alias="max")
    deadband: Annotated[float, Field(ge=0)] | None = None
    alarm: str | None = Field(default=None, max_length=64, pattern=_EVENT_KIND)
    choices: list[int | float] | None = Field(default=None, min_length=1, max_length=256)
    description: str = ""


class _ProfileSpec(Table):
    device: _DeviceSpec
    points: list[_PointSpec] = Field(min_length=1, max_length=2000)


# --- the validated profile ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Profile:
    """A validated device type with its read plan, computed once here."""

    type: str
    description: str
    source: Path
    limits: Limits
    points: Mapping[str, Point]
    requests: tuple[ReadRequest, ...]
    write_multiple: bool = False
    request_pause: float = 0.0


def parse_profile(raw: Mapping[str, Any], source: Path) -> Profile:
    """Validate a parsed profile document; ProfileError lists every problem."""
    try:
        spec = _ProfileSpec.parse(raw)
    except Invalid as err:
        raise ProfileError(str(source), error_lines(err)) from None
    problems: list[str] = []
    points = [
        _build_point(spec.device, p, f"points[{i}]", problems) for i, p in enumerate(spec.points)
    ]
    limits = Limits(
        max_registers=spec.device.max_registers,
        max_bits=spec.device.max_bits,
        max_gap=spec.device.max_gap,
        merge=spec.device.merge_requests,
    )
    _check_together(points, limits, problems)
    if problems:
        raise ProfileError(str(source), problems)
    return Profile(
        type=spec.device.type,
        description=spec.device.description,
        source=source,
        limits=limits,
        points={p.name: p for p in points},
        requests=tuple(plan(points, limits)),
        write_multiple=spec.device.write_multiple,
        request_pause=spec.device.request_pause,
    )


def _build_point(device: _DeviceSpec, spec: _PointSpec, where: str, problems: list[str]) -> Point:
    def bad(key: str, message: str) -> None:
        problems.append(f"{where}.{key}: {message}")

    kind = spec.kind
    dtype = spec.type or (DataType.BOOL if kind.is_bit else DataType.UINT16)
    given = spec.given

    if kind.is_bit and dtype is not DataType.BOOL:
        bad("type", f'a {kind} holds one bit: type must be "bool", got "{dtype}"')
    inapplicable: tuple[str, ...] = ()
    if kind.is_bit:
        inapplicable = ("bit", "byte_order", "word_order", "scale", "offset")
    elif dtype.is_boolean:
        inapplicable = ("word_order", "scale", "offset")
    elif dtype.registers == 1:
        inapplicable = ("word_order",)
    for key in sorted(given & set(inapplicable)):
        bad(key, f"does not apply to a {kind if kind.is_bit else dtype} point")
    if dtype is DataType.BIT:
        if spec.bit is None:
            bad("bit", 'required for type "bit" (0-15)')
        elif not 0 <= spec.bit <= 15:
            bad("bit", f"expected 0-15 (a bit of one 16-bit register), got {spec.bit}")
    elif spec.bit is not None and not kind.is_bit:
        bad("bit", f'only for type "bit", not "{dtype}"')
    if dtype.is_boolean and "deadband" in given:
        bad("deadband", "does not apply to a boolean point")

    size = 1 if kind.is_bit else dtype.registers
    if spec.count is not None and spec.count != size:
        bad("count", f"{dtype} spans {size} register(s), got count = {spec.count}")

    address = spec.address - device.address_base
    if address < 0:
        bad("address", f"addresses count from {device.address_base} in this profile, got 0")
    elif address + size > 65536:
        bad("address", f"{dtype} at {spec.address} runs past the last address (65535)")
    if size > device.max_registers and not kind.is_bit:
        bad(
            "type",
            f"{dtype} spans {size} registers, device.max_registers is {device.max_registers}",
        )

    if spec.access is PointAccess.READ_WRITE:
        if not kind.writable:
            bad("access", f"{kind} {'inputs' if kind.is_bit else 'registers'} are read-only")
        elif dtype is DataType.BIT:
            bad("access", "a bit field cannot be written alone: write its register as uint16")
    if not math.isfinite(spec.scale) or spec.scale == 0:
        bad("scale", f"must be a finite non-zero number, got {spec.scale}")
    if not math.isfinite(spec.offset):
        bad("offset", f"must be a finite number, got {spec.offset}")
    if spec.minimum is not None and spec.maximum is not None and spec.minimum > spec.maximum:
        bad("min", f"{spec.minimum} is greater than max {spec.maximum}")
    if spec.alarm is not None and not dtype.is_boolean:
        bad("alarm", f'only boolean points (bool, bit) raise alarms, this one is "{dtype}"')

    point = Point(
        name=spec.name,
        register=kind,
        address=max(address, 0),
        type=dtype,
        bit=spec.bit,
        byte_order=spec.byte_order or device.byte_order,
        word_order=spec.word_order or device.word_order,
        scale=spec.scale,
        offset=spec.offset,
        unit=spec.unit,
        access=spec.access,
        minimum=spec.minimum,
        maximum=spec.maximum,
        deadband=spec.deadband,
        alarm=spec.alarm,
        description=spec.description,
    )
    if spec.choices is not None:
        if dtype.is_boolean:
            bad("choices", f"does not apply to a {dtype} point (it is true or false already)")
        else:
            if math.isfinite(spec.scale) and spec.scale != 0:  # else already reported
                _check_choices(point, spec.choices, bad)
            point = replace(point, choices=tuple(spec.choices))
    return point


def _check_choices(
    point: Point, choices: list[int | float], bad: Callable[[str, str], None]
) -> None:
    """Every choice is distinct and a value the point can carry (type range, min/max)."""
    seen: set[float] = set()
    for choice in choices:
        if choice in seen:
            bad("choices", f"{choice} is listed twice")
        seen.add(choice)
        raw = (choice - point.offset) / point.scale
        if point.type is not DataType.FLOAT32 and abs(raw - round(raw)) > 1e-9:
            bad("choices", f"{choice} is not a whole step of {point.type} (raw {raw:g})")
            continue
        try:
            encode(point, choice)
        except InvalidValue as exc:
            bad("choices", str(exc).removeprefix(f"{point.name}: "))


def _check_together(points: list[Point], limits: Limits, problems: list[str]) -> None:
    """Checks across points: unique names, writes that would clobber each other."""
    seen: dict[str, int] = {}
    for i, point in enumerate(points):
        if point.name in seen:
            problems.append(
                f"points[{i}].name: {point.name!r} already used by points[{seen[point.name]}]"
            )
        seen.setdefault(point.name, i)

    # Two multi-register values sharing some registers but not all: one of the
    # addresses is wrong (a uint32 at 10 and another at 11 both read register 11).
    wide = [(i, p) for i, p in enumerate(points) if p.size > 1]
    for n, (i, p) in enumerate(wide):
        for j, q in wide[:n]:
            same = (p.address, p.end) == (q.address, q.end)
            overlap = p.register is q.register and p.address < q.end and q.address < p.end
            if overlap and not same and not (p.writable and q.writable):  # those: below
                problems.append(
                    f"points[{i}].address: {p.name!r} ({p.type}, {p.register} "
                    f"{p.address}-{p.end - 1}) overlaps {q.name!r} (points[{j}], {q.type}, "
                    f"{q.address}-{q.end - 1}): each would read the other's registers"
                )

    writable = [(i, p) for i, p in enumerate(points) if p.writable]
    for n, (i, p) in enumerate(writable):
        for j, q in writable[:n]:
            if p.register is q.register and p.address < q.end and q.address < p.end:
                problems.append(
                    f"points[{i}].address: {p.name!r} ({p.register} {p.address}-{p.end - 1}) "
                    f"overlaps writable point {q.name!r} (points[{j}], "
                    f"{q.register} {q.address}-{q.end - 1}): one write would clobber the other"
                )


# --- finding and loading files ------------------------------------------------------


def is_profile_path(ref: str) -> bool:
    """`lamppost` names a profile; `./x.toml`, `/etc/…/x.toml` name a file."""
    return "/" in ref or ref.endswith(".toml")


def shipped_profiles(dirs: Sequence[Path] = (SHIPPED_PROFILES,)) -> list[str]:
    names = {p.stem for d in dirs if d.is_dir() for p in d.glob("*.toml")}
    return sorted(names)


def find_profile(ref: str, dirs: Sequence[Path] = (SHIPPED_PROFILES,)) -> Path:
    """The file a profile reference names: a path, or `<name>.toml` in the first dir having it."""
    if is_profile_path(ref):
        return Path(ref)
    for directory in dirs:
        candidate = directory / f"{ref}.toml"
        if candidate.is_file():
            return candidate
    known = ", ".join(shipped_profiles(dirs)) or "none"
    raise ProfileError(ref, [f"no such profile (known: {known})"])  # shown as "ref: no such…"


_files = TomlFiles(parse_profile, ProfileError)


def load_profile(path: Path) -> Profile:
    """Read and validate one profile file (cached while the file is unchanged)."""
    return _files.load(path)


def resolve_profile(ref: str, dirs: Sequence[Path] = (SHIPPED_PROFILES,)) -> Profile:
    return load_profile(find_profile(ref, dirs))
