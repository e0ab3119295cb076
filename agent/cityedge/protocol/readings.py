"""Readings blocks: how a v2 `telemetry` message carries its readings (docs/protocol.md §6.1).

    block = [t0, devices, points, groups]
    t0      int: milliseconds since the Unix epoch, the first group's time
    devices array of str: the device names the groups refer to, by index
    points  array of [name, unit?, scale?]: the points the groups refer to, by index
    groups  array of [device, dt, quality, point, value, point, value, ...]; device
            and dt are steps from the group before (device index + 1, time)

One group is one poll: a run of readings of one device taken at one millisecond
with one quality, so readings come back in the order they were sealed. In a report
by exception (a few readings of many devices) the tables and the per-group fields
dominate: steps of 0 deflate to almost nothing, and the protocol's preset
dictionary holds the common point names. A point entry with a `scale` k carries
float values as integers m (value = m / 10^k): a lamppost's 230.1 V travels as
2301 in three bytes, not as a float64.
Other floats go as float32 when float32 holds them exactly, else as float64.
When DEFLATE makes it smaller, `data` is a bin holding the zlib stream of the
block's MessagePack bytes, deflated from the protocol's preset dictionary
(protocol/dictionary.py), instead of the block itself.

The encoder reads the outbox's internal reading entries (`entries.reading_entry`);
the decoder is strict and names the field that is wrong.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Any, Final, NoReturn, cast

import msgpack

from cityedge.protocol.decoding import MAX_MESSAGE_BYTES, malformed, read_array, show, unpack
from cityedge.protocol.dictionary import DICTIONARY, DICTIONARY_ID
from cityedge.sdk.model import Quality, Reading

QUALITY_CODES: Final = (Quality.GOOD, Quality.CLOCK_UNSYNCED, Quality.SUBSTITUTED)
_CODE_BY_QUALITY: Final = {q.value: i for i, q in enumerate(QUALITY_CODES)}
MAX_SCALE: Final = 15  # a decoder accepts scales 0..15 (10^15 is exact in float64)
ENCODER_SCALES: Final = 6  # the reference encoder tries scales 0..6
MAX_MANTISSA: Final = 1 << 53  # |m| of a scaled value: exact in float64
MAX_TS: Final = MAX_MANTISSA / 1000  # ±2^53 ms (year 287,000): exact as milliseconds
COMPRESSION_LEVEL: Final = 6
MAX_INFLATED: Final = MAX_MESSAGE_BYTES  # a compressed block may not inflate beyond this

_DIVISORS: Final = tuple(10.0**k for k in range(MAX_SCALE + 1))  # exact in float64
_F32: Final = struct.Struct(">f")
_VALUE_TYPES: Final = frozenset((bool, int, float, str))


class _Float32(float):
    """A float the block writer packs as MessagePack float 32 (`ca`)."""

    __slots__ = ()


def wire_time(ts: float) -> float:
    """A reading's time as a block carries it: to the millisecond (round half even)."""
    return round(ts * 1000) / 1000


def decimal(value: float) -> tuple[int, int] | None:
    """(scale k, mantissa m) from the shortest decimal that reads back as `value`
    (repr's digits): m / 10^k == value exactly. None when k would exceed 6 or |m|
    2^53, and for -0.0, NaN and infinities."""
    text = repr(value)
    dot = text.find(".")
    if dot < 0 or "e" in text:
        return _exponent_decimal(text)
    k = len(text) - dot - 1
    if k == 1 and text[-1] == "0":  # a whole number
        if text == "-0.0":
            return None  # it would come back as 0.0
        k, m = 0, int(value)
    elif k > ENCODER_SCALES:
        return None
    else:
        m = round(value * _DIVISORS[k])  # the digits, unless the product rounded away
        if m / _DIVISORS[k] != value:
            m = int(text[:dot] + text[dot + 1 :])
    return (k, m) if -MAX_MANTISSA <= m <= MAX_MANTISSA else None


def _exponent_decimal(text: str) -> tuple[int, int] | None:
    """`decimal` for repr's other forms: 1e-05, 1.5e+16, inf, nan."""
    mantissa, e, power = text.partition("e")
    if not e:
        return None  # inf, nan
    whole, _, fraction = mantissa.partition(".")
    k = len(fraction) - int(power)
    m = int(whole + fraction)
    if k < 0:
        m, k = m * 10**-k, 0
    if k > ENCODER_SCALES or not -MAX_MANTISSA <= m <= MAX_MANTISSA:
        return None
    return k, m


def _natural_float(value: float) -> float:
    """The float marked for float32 when float32 holds it exactly, else float64."""
    try:
        narrow = _F32.unpack(_F32.pack(value))[0]
    except OverflowError:
        return value
    return _Float32(value) if narrow == value else value


# A lamppost's values repeat (0.95, 230.1, 50.0): the wire form of a float is worked
# out once (repr is most of a reading's cost) and looked up after that. Keyed on the
# float, so never for zeros (0.0 == -0.0, which travels differently) nor NaN; bounded.
_WIRE_FLOATS: dict[float, tuple[int | None, float | int]] = {}
_WIRE_FLOATS_MAX: Final = 1 << 16


def _wire_float(value: float) -> tuple[int | None, float | int]:
    """(scale, mantissa) of a float a point entry can scale, else (None, the float as
    it is packed: a _Float32 when float32 holds it exactly)."""
    pair = decimal(value)
    wire: tuple[int | None, float | int] = (None, _natural_float(value)) if pair is None else pair
    if value and value == value:
        if len(_WIRE_FLOATS) >= _WIRE_FLOATS_MAX:
            _WIRE_FLOATS.clear()
        _WIRE_FLOATS[value] = wire
    return wire


def encode_block(entries: Sequence[Sequence[Any]]) -> bytes:
    """The readings block (MessagePack bytes) of internal reading entries
    `[device, point, value, ts, unit?, quality?]`, in the order they came."""
    devices: dict[str, int] = {}
    points: dict[tuple[str, str | None, int | None], int] = {}
    rows: list[list[Any]] = []  # [device, ms, quality, point, value, …]; ms - t0 at the end
    group: list[Any] = []
    # A group is a run of readings of one device, millisecond and quality: a poll's
    # readings come one after the other. The loop runs for every reading sealed: the
    # common cases take the short way (hence the local names).
    last_device: Any = None
    last_ts: Any = None
    last_ms = last_quality = -1
    narrow = False
    wire_floats, wire_float, point_index = _WIRE_FLOATS, _wire_float, points.get
    last_of: dict[str, tuple[str | None, int | None, int]] = {}
    last_of_point = last_of.get
    unit: str | None
    scale: int | None
    p: int
    for e in entries:
        n = len(e)
        if n == 5:
            device, point, value, ts, unit = e
            quality = 0
        elif n == 4:
            device, point, value, ts = e
            unit, quality = None, 0
        elif n == 6:
            device, point, value, ts, unit, quality_name = e
            quality = _CODE_BY_QUALITY[quality_name]
        else:
            raise ValueError(f"reading entry {e!r:.80}: expected 4-6 fields")
        if type(value) is float:
            wire = wire_floats.get(value) if value else None
            scale, value = wire_float(value) if wire is None else wire
            if scale is None and type(value) is _Float32:
                narrow = True
        else:
            scale = None
        # A point's unit and scale rarely change within a message: check the last
        # ones seen for this point before building and hashing the full key.
        seen = last_of_point(point)
        if seen is not None and seen[0] is unit and seen[1] is scale:
            p = seen[2]
        else:
            point_key = (point, unit, scale)
            known = point_index(point_key)
            p = points[point_key] = len(points) if known is None else known
            last_of[point] = (unit, scale, p)
        if ts != last_ts or device != last_device or quality != last_quality:
            ms = round(ts * 1000)
            if ms != last_ms or device != last_device or quality != last_quality:
                d = devices.get(device)
                if d is None:
                    d = devices[device] = len(devices)
                group = [d, ms, quality]
                rows.append(group)
                last_device, last_ms, last_quality = device, ms, quality
            last_ts = ts
        group += (p, value)
    t0 = rows[0][1] if rows else 0
    last_d, last_ms = -1, t0
    for row in rows:  # steps from the group before: a street's run is 0, 0, 0, …
        d, ms = row[0], row[1]
        row[0], row[1] = d - last_d - 1, ms - last_ms
        last_d, last_ms = d, ms
    table = [t0, list(devices), [_point_entry(k) for k in points]]
    if not narrow:
        return cast(bytes, msgpack.packb([*table, rows]))
    head = cast(bytes, msgpack.packb(table))  # an array of 3: widened to 4 below
    return b"".join((b"\x94", head[1:], array_header(len(rows)), *map(_pack_row, rows)))


def _point_entry(key: tuple[str, str | None, int | None]) -> list[Any]:
    name, unit, scale = key
    if scale is not None:
        return [name, unit, scale]
    return [name] if unit is None else [name, unit]


def _pack_row(row: list[Any]) -> bytes:
    if not any(type(v) is _Float32 for v in row):
        return cast(bytes, msgpack.packb(row))
    parts = [array_header(len(row))]
    for v in row:
        parts.append(b"\xca" + _F32.pack(v) if type(v) is _Float32 else msgpack.packb(v))
    return b"".join(parts)


def array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def pack_data(block: bytes, *, compress: bool = True) -> bytes:
    """The `data` field's bytes: the block, or a bin of its zlib stream when that is
    smaller (`compress=False` never compresses)."""
    if not compress or len(block) < 64:  # a header's worth: deflate cannot pay
        return block
    deflater = zlib.compressobj(
        COMPRESSION_LEVEL, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY
    )
    packed = cast(bytes, msgpack.packb(deflater.compress(block) + deflater.flush()))
    return packed if len(packed) < len(block) else block


# --- decoding ------------------------------------------------------------------------


def inflate(data: bytes, where: str) -> Any:
    """The block inside a compressed `data`: one whole zlib stream, at most MAX_INFLATED,
    without a preset dictionary or with the protocol's."""
    asks = len(data) >= 6 and (data[0] << 8 | data[1]) % 31 == 0 and data[1] & 0x20  # FDICT
    if asks and data[2:6] != DICTIONARY_ID:
        raise malformed(f"{where}: the zlib stream asks for a dictionary not the protocol's")
    inflater = zlib.decompressobj(zdict=DICTIONARY)
    try:
        block = inflater.decompress(data, MAX_INFLATED)
    except zlib.error as exc:
        raise malformed(f"{where}: not a zlib stream ({exc})") from None
    if inflater.unconsumed_tail:
        raise malformed(f"{where}: inflates beyond {MAX_INFLATED} bytes")
    if not inflater.eof:
        raise malformed(f"{where}: the zlib stream is truncated")
    if inflater.unused_data:
        raise malformed(f"{where}: {len(inflater.unused_data)} bytes after the zlib stream")
    return unpack(block, where)


def decode_block(raw: Any, where: str = "body.data") -> list[Reading]:
    """The readings of a `data` field as decoded MessagePack (a block, or a bin
    holding a compressed one); EnvelopeError names what is wrong."""
    if isinstance(raw, bytes):
        raw = inflate(raw, where)
    t0, devices, points, groups = read_array(raw, where, 4, 4)
    if type(t0) is not int or not -MAX_MANTISSA <= t0 <= MAX_MANTISSA:
        raise malformed(f"{where}[0] (t0): expected milliseconds as an integer, got {show(t0)}")
    names = _names(devices, f"{where}[1] (devices)")
    table = _points(points, f"{where}[2] (points)")
    if not isinstance(groups, list):
        raise malformed(f"{where}[3] (groups): expected an array, got {show(groups)}")
    # One pass, the checks inline: a message may hold hundreds of one-reading groups.
    # Anything wrong goes to _refuse_group, which names the field.
    divisors = [None if scale is None else _DIVISORS[scale] for _, _, scale in table]
    count, known = len(table), len(names)
    out: list[Reading] = []
    append = out.append
    last_d, ms = -1, t0  # device and dt are steps from the group before
    for i, group in enumerate(groups):
        if type(group) is not list or len(group) < 5 or not len(group) & 1:
            _refuse_group(group, last_d, ms, names, table, f"{where}[3][{i}]")
        d, dt, q = group[0], group[1], group[2]
        if type(d) is not int or type(dt) is not int or type(q) is not int:
            _refuse_group(group, last_d, ms, names, table, f"{where}[3][{i}]")
        last_d += d + 1
        ms += dt
        if not 0 <= last_d < known or not -MAX_MANTISSA <= ms <= MAX_MANTISSA or not 0 <= q <= 2:
            _refuse_group(group, last_d - d - 1, ms - dt, names, table, f"{where}[3][{i}]")
        device, quality, ts = names[last_d], QUALITY_CODES[q], ms / 1000
        for j in range(3, len(group), 2):
            p, value = group[j], group[j + 1]
            if type(p) is not int or not 0 <= p < count:
                _refuse_group(group, last_d - d - 1, ms - dt, names, table, f"{where}[3][{i}]")
            divisor = divisors[p]
            if divisor is None:
                if type(value) not in _VALUE_TYPES:
                    _refuse_group(group, last_d - d - 1, ms - dt, names, table, f"{where}[3][{i}]")
            elif type(value) is int and -MAX_MANTISSA <= value <= MAX_MANTISSA:
                value = value / divisor  # exact operands: one IEEE division
            else:
                _refuse_group(group, last_d - d - 1, ms - dt, names, table, f"{where}[3][{i}]")
            name, unit, _ = table[p]
            append(Reading(device, name, value, ts, unit, quality))
    return out


def _names(raw: Any, where: str) -> list[str]:
    if not isinstance(raw, list):
        raise malformed(f"{where}: expected an array of names, got {show(raw)}")
    for i, name in enumerate(raw):
        if not isinstance(name, str):
            raise malformed(f"{where}[{i}]: expected text, got {show(name)}")
    if len(set(raw)) != len(raw):
        raise malformed(f"{where}: a device is listed twice")
    return raw


def _points(raw: Any, where: str) -> list[tuple[str, str | None, int | None]]:
    if not isinstance(raw, list):
        raise malformed(f"{where}: expected an array of point entries, got {show(raw)}")
    table: list[tuple[str, str | None, int | None]] = []
    for i, entry in enumerate(raw):
        f = read_array(entry, f"{where}[{i}]", 1, 3)
        name, unit, scale = f[0], f[1] if len(f) > 1 else None, f[2] if len(f) > 2 else None
        if not isinstance(name, str):
            raise malformed(f"{where}[{i}].name: expected text, got {show(name)}")
        if unit is not None and not isinstance(unit, str):
            raise malformed(f"{where}[{i}].unit: expected text or nil, got {show(unit)}")
        if scale is not None and (type(scale) is not int or not 0 <= scale <= MAX_SCALE):
            raise malformed(f"{where}[{i}].scale: expected 0-{MAX_SCALE} or nil, got {show(scale)}")
        table.append((name, unit, scale))
    if len(set(table)) != len(table):
        raise malformed(f"{where}: a point entry is listed twice")
    return table


def _refuse_group(
    raw: Any,
    last_d: int,
    ms: int,
    devices: list[str],
    points: list[tuple[str, str | None, int | None]],
    where: str,
) -> NoReturn:
    """A group the fast path refused, checked field by field: the error names the
    first wrong one."""
    if not isinstance(raw, list) or len(raw) < 5 or len(raw) % 2 == 0:
        shape = "[device, dt, quality, point, value, …]"
        raise malformed(f"{where}: expected {shape}, got {show(raw)}")
    d, dt, q = raw[0], raw[1], raw[2]
    if type(d) is not int or not 0 <= d + last_d + 1 < len(devices):
        raise malformed(
            f"{where}[0] (device): expected a step from index {last_d} + 1 to an index "
            f"0-{len(devices) - 1}, got {show(d)}"
        )
    if type(dt) is not int or not -MAX_MANTISSA <= ms + dt <= MAX_MANTISSA:
        raise malformed(
            f"{where}[1] (dt): expected a step in milliseconds from {ms} to a time "
            f"within ±2^53, got {show(dt)}"
        )
    if type(q) is not int or not 0 <= q < len(QUALITY_CODES):
        raise malformed(f"{where}[2] (quality): expected 0, 1 or 2, got {show(q)}")
    for j in range(3, len(raw), 2):
        p, value = raw[j], raw[j + 1]
        if type(p) is not int or not 0 <= p < len(points):
            raise malformed(
                f"{where}[{j}] (point): expected an index below {len(points)}, got {show(p)}"
            )
        name, _, scale = points[p]
        if scale is not None:
            if type(value) is not int or not -MAX_MANTISSA <= value <= MAX_MANTISSA:
                raise malformed(
                    f"{where}[{j + 1}] (value): point {name!r} is scaled, so an integer "
                    f"of at most 2^53, got {show(value)}"
                )
        elif type(value) not in _VALUE_TYPES:
            raise malformed(
                f"{where}[{j + 1}] (value): expected bool, int, float or text, got {show(value)}"
            )
    raise malformed(f"{where}: not a valid group")  # unreachable while the checks agree
