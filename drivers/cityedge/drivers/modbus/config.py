"""`[[drivers.modbus]]`: one table per bus, its devices and their profiles.

A bus is a Modbus TCP network (`transport = "tcp"`, the default: each device
names its host and port) or one serial line (`transport = "rtu"`: the table
names the port and its settings, each device its unit id on the line).
`Section.parse` picks the right table by `transport`, so errors name
the keys a technician wrote (`drivers.modbus[1].devices[2].unit`).

Profiles are loaded and validated here, at config load: a bad or missing
profile is an error at `devices[i].profile` naming the file and the problem,
before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, cast

from cityedge.drivers.modbus.budget import RTU_BAUDS, LineFormat
from cityedge.drivers.modbus.profile import SHIPPED_PROFILES, Profile, ProfileError, resolve_profile
from cityedge.sdk.driver import DriverSection
from cityedge.sdk.tables import Convert, Field, Invalid, Table, check, check_table


def _load_profile(value: object, context: Mapping[str, Any]) -> object:
    """A profile name (`lamppost`) or an absolute path, made into a `Profile`.

    Names are looked up in the validation context's `profile_dirs` when the
    loader passes one (`DriverEnv.profile_dirs`), else among the shipped profiles.
    """
    if not isinstance(value, str):
        return value  # a Profile given in code passes; anything else fails the type check
    dirs = tuple(context.get("profile_dirs") or (SHIPPED_PROFILES,))
    try:
        return resolve_profile(value, dirs)
    except ProfileError as err:
        raise Invalid.in_file(err.source, err.problems) from None


ProfileRef = Annotated[Profile, Convert(_load_profile)]


class TcpDevice(Table):
    """One device reached over Modbus TCP (directly, or through a gateway's unit id)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    profile: ProfileRef
    host: str = Field(min_length=1, max_length=253)
    port: Annotated[int, Field(ge=1, le=65535)] = 502
    unit: Annotated[int, Field(ge=0, le=247)] = 1
    poll_interval: Annotated[float, Field(gt=0, le=86400)] = 1.0
    timeout: Annotated[float, Field(gt=0, le=60)] = 1.0  # per request (and per connect)
    retries: Annotated[int, Field(ge=0, le=10)] = 1  # of a read after a timeout/bad reply
    backoff_max: Annotated[float, Field(gt=0, le=3600)] = 30.0  # longest wait while down

    @property
    def endpoint(self) -> tuple[str, int]:
        return (self.host, self.port)


class Section(DriverSection):
    """One `[[drivers.modbus]]` table: validates as `TcpSection` or `RtuSection`."""

    transport: Literal["tcp", "rtu"] = "tcp"

    @classmethod
    def parse(cls, raw: Mapping[str, Any], *, context: Mapping[str, Any] | None = None) -> Any:
        if cls is not Section or not isinstance(raw, Mapping):
            return super().parse(raw, context=context)
        transport = raw.get("transport", "tcp")
        if transport not in ("tcp", "rtu"):
            raise Invalid.at((("transport",), 'expected "tcp" or "rtu"', transport))
        table = RtuSection if transport == "rtu" else TcpSection
        return cast(Section, table.parse(raw, context=context))


class TcpSection(Section):
    """`transport = "tcp"`: devices reached over Modbus TCP, each at its host and port."""

    transport: Literal["tcp"] = "tcp"
    devices: list[TcpDevice] = Field(min_length=1, max_length=1000)

    @check_table
    def _distinct(self) -> None:
        names: dict[str, int] = {}
        units: dict[tuple[str, int, int], int] = {}
        problems = []
        for i, device in enumerate(self.devices):
            if device.name in names:
                problems.append(f"devices[{i}].name: {device.name!r} already used by "
                                f"devices[{names[device.name]}]")  # fmt: skip
            names.setdefault(device.name, i)
            key = (device.host, device.port, device.unit)
            if key in units:
                problems.append(f"devices[{i}].unit: {device.host}:{device.port} unit "
                                f"{device.unit} is already devices[{units[key]}]")  # fmt: skip
            units.setdefault(key, i)
        if problems:
            raise ValueError("; ".join(problems))


# --- Modbus RTU: one serial line ------------------------------------------------------


def _parity(value: object, context: Mapping[str, Any]) -> object:
    """`"E"`, or the word a technician may write: `"even"`, `"none"`, `"odd"`."""
    words = {"none": "N", "even": "E", "odd": "O", "n": "N", "e": "E", "o": "O"}
    return words.get(value.lower(), value) if isinstance(value, str) else value


class RtuDevice(Table):
    """One device on a serial line, told apart by its unit id (slave address)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    profile: ProfileRef
    unit: Annotated[int, Field(ge=1, le=247)]  # 0 is broadcast, 248-255 reserved
    poll_interval: Annotated[float, Field(gt=0, le=86400)] = 1.0
    timeout: Annotated[float, Field(gt=0, le=60)] | None = None  # default: the line's
    retries: Annotated[int, Field(ge=0, le=10)] = 1
    backoff_max: Annotated[float, Field(gt=0, le=3600)] = 30.0


class RtuSection(Section):
    """`transport = "rtu"`: one serial line (RS-485 usually), several devices on it."""

    transport: Literal["rtu"] = "rtu"
    port: str = Field(min_length=1, max_length=4096)  # /dev/ttyUSB0, /dev/serial/by-id/…
    baud: int = 19200  # `baud`, as on every serial driver's table
    parity: Annotated[Literal["N", "E", "O"], Convert(_parity)] = "E"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[8] = 8  # RTU frames carry 8-bit bytes; 7 bits is Modbus ASCII
    frame_gap: Annotated[float, Field(gt=0, le=1)] | None = None  # default: 3.5 characters
    timeout: Annotated[float, Field(gt=0, le=60)] = 0.5  # per request
    reopen_max: Annotated[float, Field(gt=0, le=3600)] = 30.0  # longest wait to reopen a lost port
    devices: list[RtuDevice] = Field(min_length=1, max_length=247)

    @property
    def line(self) -> LineFormat:
        return LineFormat(self.baud, self.bytesize, self.parity, self.stopbits)

    @check("port")
    @classmethod
    def _port_named(cls, port: str) -> str:
        if not port.strip():
            raise ValueError("names no serial device")
        return port

    @check("baud")
    @classmethod
    def _standard_baud(cls, baud: int) -> int:
        if baud not in RTU_BAUDS:
            shown = ", ".join(str(b) for b in RTU_BAUDS)
            raise ValueError(f"expected one of {shown}")
        return baud

    @check_table
    def _distinct(self) -> None:
        problems: list[tuple[tuple[str | int, ...], str, object]] = []
        names: dict[str, int] = {}
        units: dict[int, int] = {}
        for i, device in enumerate(self.devices):
            if device.name in names:
                problems.append((("devices", i, "name"),
                                 f"{device.name!r} already used by devices[{names[device.name]}]",
                                 device.name))  # fmt: skip
            names.setdefault(device.name, i)
            if device.unit in units:
                problems.append((("devices", i, "unit"),
                                 f"unit {device.unit} is already devices[{units[device.unit]}] "
                                 f"on {self.port}", device.unit))  # fmt: skip
            units.setdefault(device.unit, i)
        if problems:
            raise Invalid.at(*problems)
