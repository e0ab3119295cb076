"""ASCII device profiles: a request/response device type as data (TOML).

A profile is a `[device]` table (line conventions, what OK and ERR look
like), `[[requests]]` (what to send when polling and the regex its answer
must match, with one named group per value) and `[[points]]` (which group of
which request, type, scale, limits, and for writable points the template that
sets them). Every problem is reported at once, each naming the file and the key
path (`points[2].group: ...`). docs/serial.md describes every key;
config/profiles/ascii/ holds the shipped ones.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from cityedge.drivers.ascii.points import Point, PointType
from cityedge.sdk.driver import SHIPPED_CONFIG_DIR
from cityedge.sdk.model import PointAccess
from cityedge.sdk.problems import FileProblems, error_lines
from cityedge.sdk.tables import Field, Invalid, Table
from cityedge.sdk.tomlfile import TomlFiles

SHIPPED_PROFILES = SHIPPED_CONFIG_DIR / "profiles" / "ascii"
SUBDIR = "ascii"  # under each of DriverEnv.profile_dirs

_NAME = r"^[a-z][a-z0-9_]*$"
_PRINTABLE = r"[ -~]*"


ProfileError = FileProblems  # every problem of one file, as the config reports them


# --- the TOML schema ----------------------------------------------------------------


class _DeviceSpec(Table):
    type: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    description: str = ""
    terminator: Literal["\r\n", "\n", "\r"] = "\r\n"  # sent after every request
    encoding: Literal["ascii", "latin-1", "utf-8"] = "ascii"
    ok: str = "OK"  # regex: the answer to a successful write
    error: str | None = r"ERR(?: (?P<code>\S+))?(?: .*)?"  # regex: a refusal
    echo: bool = False  # quirk: the device echoes each request before answering
    request_pause: Annotated[float, Field(ge=0, le=5)] = 0.0  # quiet after each exchange


class _RequestSpec(Table):
    name: str = Field(min_length=1, max_length=64, pattern=_NAME)
    send: str = Field(min_length=1, max_length=256)
    expect: str = Field(min_length=1, max_length=1024)


class _PointSpec(Table):
    name: str = Field(min_length=1, max_length=64, pattern=_NAME)
    type: PointType
    read: str
    group: str | None = None  # default: the point's name
    unit: str | None = Field(default=None, max_length=16)
    access: PointAccess = PointAccess.READ
    write: str | None = Field(default=None, min_length=1, max_length=256)
    write_expect: str | None = None  # default: the device's `ok`
    scale: float = 1.0
    offset: float = 0.0
    minimum: float | None = Field(default=None, alias="min")
    maximum: float | None = Field(default=None, alias="max")
    max_length: Annotated[int, Field(ge=1, le=1024)] | None = None
    charset: str | None = Field(default=None, min_length=1, max_length=256)
    choices: list[str] | None = Field(default=None, min_length=1)
    on: str | None = Field(default=None, min_length=1, max_length=32)
    off: str | None = Field(default=None, min_length=1, max_length=32)
    deadband: Annotated[float, Field(ge=0)] | None = None
    description: str = ""


class _ProfileSpec(Table):
    device: _DeviceSpec
    requests: list[_RequestSpec] = Field(min_length=1, max_length=64)
    points: list[_PointSpec] = Field(min_length=1, max_length=256)


# --- the validated profile ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    name: str
    send: str  # template: may use {address}
    expect: re.Pattern[str]
    points: tuple[str, ...]  # the points its answer carries


@dataclass(frozen=True, slots=True)
class Profile:
    type: str
    description: str
    source: Path
    terminator: str
    encoding: str
    ok: re.Pattern[str]
    error: re.Pattern[str] | None
    echo: bool
    request_pause: float
    requests: Mapping[str, Request]
    points: Mapping[str, Point]
    uses_address: bool  # some template needs the device's {address}


def parse_profile(raw: Mapping[str, Any], source: Path) -> Profile:
    """Validate a parsed profile document; ProfileError lists every problem."""
    try:
        spec = _ProfileSpec.parse(raw)
    except Invalid as err:
        raise ProfileError(str(source), error_lines(err)) from None
    problems: list[str] = []
    device = spec.device
    ok = _regex(device.ok, "device.ok", problems)
    error = _regex(device.error, "device.error", problems) if device.error else None

    requests: dict[str, tuple[str, re.Pattern[str] | None]] = {}
    uses_address = False
    for i, r in enumerate(spec.requests):
        where = f"requests[{i}]"
        if r.name in requests:
            problems.append(f"{where}.name: {r.name!r} is already a request")
        fields = _template(r.send, f"{where}.send", {"address"}, problems)
        uses_address |= "address" in fields
        requests[r.name] = (r.send, _regex(r.expect, f"{where}.expect", problems))

    points: list[Point] = []
    seen: dict[str, int] = {}
    for i, p in enumerate(spec.points):
        where = f"points[{i}]"
        if p.name in seen:
            problems.append(f"{where}.name: {p.name!r} already used by points[{seen[p.name]}]")
        seen.setdefault(p.name, i)
        point = _build_point(p, where, device, requests, problems)
        if point is not None:
            points.append(point)
            if point.write is not None:
                uses_address |= "address" in _template(point.write, "", {"value", "address"}, [])

    carried: dict[str, list[str]] = {name: [] for name in requests}
    for point in points:
        if point.read in carried:
            carried[point.read].append(point.name)
    for i, r in enumerate(spec.requests):
        if not carried.get(r.name):
            problems.append(f"requests[{i}]: no point reads {r.name!r}: it would cost "
                            "a round trip every poll for nothing")  # fmt: skip
    if problems:
        raise ProfileError(str(source), problems)
    assert ok is not None  # no problems: every regex compiled
    return Profile(
        type=device.type,
        description=device.description,
        source=source,
        terminator=device.terminator,
        encoding=device.encoding,
        ok=ok,
        error=error,
        echo=device.echo,
        request_pause=device.request_pause,
        requests={
            name: Request(name, send, expect, tuple(carried[name]))
            for name, (send, expect) in requests.items()
            if expect is not None
        },
        points={p.name: p for p in points},
        uses_address=uses_address,
    )


def _build_point(
    spec: _PointSpec,
    where: str,
    device: _DeviceSpec,
    requests: Mapping[str, tuple[str, re.Pattern[str] | None]],
    problems: list[str],
) -> Point | None:
    before = len(problems)

    def bad(key: str, message: str) -> None:
        problems.append(f"{where}.{key}: {message}")

    given = spec.given
    kind = spec.type
    group = spec.group or spec.name
    if spec.read not in requests:
        bad("read", f"no request named {spec.read!r} (known: {', '.join(requests) or 'none'})")
    else:
        expect = requests[spec.read][1]
        if expect is not None and group not in expect.groupindex:
            key = "group" if spec.group else "name"
            bad(key, f"request {spec.read!r} has no group (?P<{group}>...) in its expect regex")

    numeric = kind in (PointType.INT, PointType.FLOAT)
    only = {
        "scale": numeric, "offset": numeric, "minimum": numeric, "maximum": numeric,
        "deadband": numeric, "max_length": kind is PointType.TEXT,
        "charset": kind is PointType.TEXT, "choices": kind is PointType.TEXT,
        "on": kind is PointType.BOOL, "off": kind is PointType.BOOL,
    }  # fmt: skip
    aliases = {"minimum": "min", "maximum": "max"}
    for key, applies in only.items():
        if key in given and not applies:
            bad(aliases.get(key, key), f"does not apply to a {kind} point")
    if numeric:
        if not math.isfinite(spec.scale) or spec.scale == 0:
            bad("scale", f"must be a finite non-zero number, got {spec.scale}")
        if not math.isfinite(spec.offset):
            bad("offset", f"must be a finite number, got {spec.offset}")
        if spec.minimum is not None and spec.maximum is not None and spec.minimum > spec.maximum:
            bad("min", f"{spec.minimum} is greater than max {spec.maximum}")
    if kind is PointType.BOOL and (spec.on or "1") == (spec.off or "0"):
        bad("on", "on and off must differ")

    writable = spec.access is PointAccess.READ_WRITE
    if writable and spec.write is None:
        bad("write", 'required for a writable point (access = "rw"): the request that sets it')
    if spec.write is not None and not writable:
        bad("write", 'only for writable points: add access = "rw"')
    if spec.write_expect is not None and spec.write is None:
        bad("write_expect", "only with write")
    write_expect = None
    if spec.write_expect is not None:
        write_expect = _regex(spec.write_expect, f"{where}.write_expect", problems)
    charset = _regex(spec.charset, f"{where}.charset", problems) if spec.charset else None
    if kind is PointType.TEXT and charset is None:
        charset = re.compile(_PRINTABLE)
    if spec.write is not None:
        fields = _template(spec.write, f"{where}.write", {"value", "address"}, problems)
        if "value" not in fields:
            bad("write", "the template must carry {value}")
        else:
            sample: object = {PointType.BOOL: spec.on or "1", PointType.INT: 0,
                              PointType.FLOAT: 0.0, PointType.TEXT: ""}[kind]  # fmt: skip
            try:
                spec.write.format(value=sample, address="")
            except (ValueError, TypeError) as exc:
                bad("write", f"{{value}} does not format a {kind}: {exc}")
    if len(problems) > before:
        return None
    return Point(
        name=spec.name,
        type=kind,
        read=spec.read,
        group=group,
        unit=spec.unit,
        access=spec.access,
        write=spec.write,
        write_expect=write_expect,
        scale=spec.scale,
        offset=spec.offset,
        minimum=spec.minimum,
        maximum=spec.maximum,
        max_length=spec.max_length or 64,
        pattern=charset,
        choices=tuple(spec.choices) if spec.choices else None,
        on=spec.on or "1",
        off=spec.off or "0",
        deadband=spec.deadband,
        description=spec.description,
    )


def _regex(text: str, where: str, problems: list[str]) -> re.Pattern[str] | None:
    try:
        return re.compile(text)
    except re.error as exc:
        problems.append(f"{where}: not a valid regular expression: {exc}")
        return None


def _template(text: str, where: str, allowed: set[str], problems: list[str]) -> set[str]:
    """The placeholders of a request template; only `allowed` plain names are accepted."""
    fields: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        problems.append(f"{where}: bad template ({exc}); write {{{{ and }}}} for literal braces")
        return fields
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in allowed or conversion:
            names = ", ".join("{" + a + "}" for a in sorted(allowed))
            problems.append(f"{where}: placeholder {{{name}}} is not allowed (only {names})")
            continue
        if name == "address" and spec:
            problems.append(f"{where}: {{address}} takes no format spec")
        fields.add(name)
    return fields


# --- finding and loading files ------------------------------------------------------


def profile_dirs(dirs: Sequence[Path]) -> tuple[Path, ...]:
    """The ASCII profile folders under the agent's profile folders."""
    return tuple(d / SUBDIR for d in dirs)


def find_profile(ref: str, dirs: Sequence[Path] = (SHIPPED_PROFILES,)) -> Path:
    """`info-panel` names a profile in the first dir having it; a `/` or `.toml` names a file."""
    if "/" in ref or ref.endswith(".toml"):
        return Path(ref)
    for directory in dirs:
        candidate = directory / f"{ref}.toml"
        if candidate.is_file():
            return candidate
    names = sorted({p.stem for d in dirs if d.is_dir() for p in d.glob("*.toml")})
    raise ProfileError(ref, [f"no such ASCII profile (known: {', '.join(names) or 'none'})"])


_files = TomlFiles(parse_profile, ProfileError)


def load_profile(path: Path) -> Profile:
    """Read and validate one profile file (cached while the file is unchanged)."""
    return _files.load(path)


def resolve_profile(ref: str, dirs: Sequence[Path] = (SHIPPED_PROFILES,)) -> Profile:
    return load_profile(find_profile(ref, dirs))
