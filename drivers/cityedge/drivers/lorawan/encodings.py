"""The encodings a device type can name: integer field types for byte layouts,
and the Cayenne LPP data types (code, size, scale, unit), as the LPP
documentation lists them. Plain tables, used by parsing and by decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# --- integer field types ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IntType:
    size: int
    signed: bool
    order: Literal["big", "little"]


INT_TYPES: dict[str, IntType] = {
    "u8": IntType(1, False, "big"),
    "s8": IntType(1, True, "big"),
    "u16be": IntType(2, False, "big"),
    "u16le": IntType(2, False, "little"),
    "s16be": IntType(2, True, "big"),
    "s16le": IntType(2, True, "little"),
    "u24be": IntType(3, False, "big"),
    "u24le": IntType(3, False, "little"),
    "s24be": IntType(3, True, "big"),
    "s24le": IntType(3, True, "little"),
    "u32be": IntType(4, False, "big"),
    "u32le": IntType(4, False, "little"),
    "s32be": IntType(4, True, "big"),
    "s32le": IntType(4, True, "little"),
}
FieldType = Literal[
    "u8", "s8", "u16be", "u16le", "s16be", "s16le", "u24be", "u24le", "s24be", "s24le",
    "u32be", "u32le", "s32be", "s32le", "skip",
]  # fmt: skip


def decimals(number: float) -> int:
    """Digits a scaled value is rounded to, so 272 × 0.1 reads 27.2, not 27.200000000000003."""
    text = f"{abs(number):.10f}".rstrip("0")
    return len(text.split(".")[1]) if "." in text else 0


def is_whole(number: float) -> bool:
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
        return "int" if is_whole(self.resolution) else "float"


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
GPS_CODE = 136
GPS_AXES = (("latitude", 0.0001, "°"), ("longitude", 0.0001, "°"), ("altitude", 0.01, "m"))
