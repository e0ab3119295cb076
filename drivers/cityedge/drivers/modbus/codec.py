"""Registers ↔ values: data types, byte and word order, scale and offset.

Reading: `value = raw * scale + offset`. Writing inverts it, rounds to the
nearest raw integer for integer types, and refuses (`InvalidValue`) what the
point's limits or the register type cannot hold. Coils and discrete inputs
travel as 0/1 integers like registers, so the driver handles one shape.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from cityedge.drivers.modbus.points import DataType, Order, Point
from cityedge.sdk.limits import check_number
from cityedge.sdk.model import InvalidValue, Value

_RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
}


class DecodeError(ValueError):
    """Registers that do not make a value of the point (a NaN, a short reply)."""


def _swap(word: int) -> int:
    return ((word & 0xFF) << 8) | (word >> 8)


def _words_to_raw(point: Point, words: Sequence[int]) -> int:
    """The unsigned integer the words hold, most significant first."""
    ordered = [_swap(w) if point.byte_order is Order.LITTLE else w for w in words]
    if len(ordered) == 1:
        return ordered[0]
    high, low = ordered if point.word_order is Order.BIG else reversed(ordered)
    return (high << 16) | low


def _raw_to_words(point: Point, raw: int, size: int) -> list[int]:
    words = [(raw >> 16) & 0xFFFF, raw & 0xFFFF] if size == 2 else [raw & 0xFFFF]
    if size == 2 and point.word_order is Order.LITTLE:
        words.reverse()
    return [_swap(w) for w in words] if point.byte_order is Order.LITTLE else words


def _shortest_float32(number: float, packed: bytes) -> float:
    """The float32 a device sent, as the fewest decimal digits that are still it.

    Widened to a double, 229.81993 in a float32 reads 229.81993103027344: digits
    the device never measured, carried into every message and open-data export.
    Nine significant digits always identify a float32; most need six or seven.
    """
    for digits in (6, 7, 8):
        candidate = float(f"{number:.{digits}g}")
        try:
            if struct.pack(">f", candidate) == packed:
                return candidate
        except OverflowError:  # rounded past the largest float32
            continue
    return float(f"{number:.9g}")


def decode(point: Point, words: Sequence[int]) -> Value:
    """The value of `point` from exactly `point.size` registers (or 0/1 bits)."""
    if len(words) != point.size:
        raise DecodeError(f"{point.name}: expected {point.size} register(s), got {len(words)}")
    if point.register.is_bit:
        return bool(words[0])
    raw = _words_to_raw(point, words)
    if point.type is DataType.BOOL:
        return raw != 0
    if point.type is DataType.BIT:
        assert point.bit is not None  # guaranteed by profile validation
        return bool((raw >> point.bit) & 1)
    number: float
    if point.type is DataType.FLOAT32:
        packed = raw.to_bytes(4, "big")
        number = struct.unpack(">f", packed)[0]
        if not math.isfinite(number):
            raise DecodeError(f"{point.name}: device sent {number} (not a number)")
        number = _shortest_float32(number, packed)
        if point.scale == 1 and point.offset == 0:
            return number
        return round(number * point.scale + point.offset, 10)
    if point.type in (DataType.INT16, DataType.INT32):
        bits = 16 * point.size
        if raw >= 1 << (bits - 1):
            raw -= 1 << bits
    if point.scale == 1 and point.offset == 0:
        return raw
    # round away binary noise (2351 * 0.1 = 235.10000000000002) without losing digits
    return round(raw * point.scale + point.offset, 10)


def encode(point: Point, value: Value) -> list[int]:
    """The registers (or one 0/1 bit) that make `value` for `point`."""
    if point.type is DataType.BIT:
        raise InvalidValue(f"{point.name}: a bit field is written with its whole register")
    if point.type is DataType.BOOL:
        if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
            return [int(value)]
        raise InvalidValue(f"{point.name}: expected true/false, got {value!r}")

    value = check_number(point.name, value, point.minimum, point.maximum)
    if point.choices is not None and value not in point.choices:
        shown = ", ".join(f"{c:g}" for c in point.choices)
        raise InvalidValue(f"{point.name}: {value:g} is not one of {shown}")
    raw_value = (value - point.offset) / point.scale

    if point.type is DataType.FLOAT32:
        try:
            packed = struct.pack(">f", raw_value)
        except OverflowError:
            raise InvalidValue(f"{point.name}: {value} does not fit a float32") from None
        return _raw_to_words(point, int.from_bytes(packed, "big"), 2)

    raw = round(raw_value)
    low, high = _RANGES[point.type]
    if not low <= raw <= high:
        raise InvalidValue(
            f"{point.name}: {value} is raw {raw}, outside {point.type} ({low}..{high})"
        )
    return _raw_to_words(point, raw & 0xFFFFFFFF, point.size)


def with_bit(point: Point, word: int, on: bool) -> int:
    """`word` with `point`'s bit set or cleared, in the point's byte order.

    For whoever owns the whole register (the simulator; a future read-modify-write).
    """
    if point.type is not DataType.BIT or point.bit is None:
        raise InvalidValue(f"{point.name}: not a bit field")
    raw = _swap(word) if point.byte_order is Order.LITTLE else word
    raw = raw | (1 << point.bit) if on else raw & ~(1 << point.bit) & 0xFFFF
    return _swap(raw) if point.byte_order is Order.LITTLE else raw
