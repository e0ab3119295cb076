"""Registers ↔ values: known vectors for each order, hypothesis round trips, bad values."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.drivers.modbus.codec import DecodeError, decode, encode, with_bit
from cityedge.drivers.modbus.points import DataType, Order, Point, RegisterKind
from cityedge.sdk.model import InvalidValue

H = RegisterKind.HOLDING
ORDERS = [(b, w) for b in Order for w in Order]


def pt(dtype: DataType, *, byte: Order = Order.BIG, word: Order = Order.BIG, **kw: object) -> Point:
    return Point("x", H, 0, dtype, byte_order=byte, word_order=word, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("dtype", "byte", "word", "words", "value"),
    [
        (DataType.UINT16, Order.BIG, Order.BIG, [0x1234], 0x1234),
        (DataType.UINT16, Order.LITTLE, Order.BIG, [0x3412], 0x1234),
        (DataType.INT16, Order.BIG, Order.BIG, [0xFFFE], -2),
        (DataType.UINT32, Order.BIG, Order.BIG, [0x0001, 0x0002], 0x00010002),
        (DataType.UINT32, Order.BIG, Order.LITTLE, [0x0002, 0x0001], 0x00010002),
        (DataType.UINT32, Order.LITTLE, Order.LITTLE, [0x0200, 0x0100], 0x00010002),
        (DataType.INT32, Order.BIG, Order.BIG, [0xFFFF, 0xFFFF], -1),
        (DataType.FLOAT32, Order.BIG, Order.BIG, [0x4366, 0x0000], 230.0),  # ABCD
        (DataType.FLOAT32, Order.BIG, Order.LITTLE, [0x0000, 0x4366], 230.0),  # CDAB
        (DataType.FLOAT32, Order.LITTLE, Order.BIG, [0x6643, 0x0000], 230.0),  # BADC
        (DataType.FLOAT32, Order.LITTLE, Order.LITTLE, [0x0000, 0x6643], 230.0),  # DCBA
    ],
)
def test_known_vectors(
    dtype: DataType, byte: Order, word: Order, words: list[int], value: float
) -> None:
    point = pt(dtype, byte=byte, word=word)
    assert decode(point, words) == value
    assert encode(point, value) == words


def test_scale_offset_and_rounding_noise() -> None:
    point = pt(DataType.UINT16, scale=0.1, unit="V")
    assert decode(point, [2351]) == 235.1  # not 235.10000000000002
    assert encode(point, 235.1) == [2351]
    temp = pt(DataType.INT16, scale=0.5, offset=-40)
    assert decode(temp, [100]) == 10.0
    assert encode(temp, 10) == [100]


def test_booleans_and_bits() -> None:
    assert decode(pt(DataType.BOOL), [7]) is True
    assert decode(Point("c", RegisterKind.COIL, 3, DataType.BOOL), [1]) is True
    status = pt(DataType.BIT, bit=3)
    assert decode(status, [0b1000]) is True and decode(status, [0b0111]) is False
    assert with_bit(status, 0b0001, True) == 0b1001
    assert with_bit(status, 0xFFFF, False) == 0xFFF7
    swapped = pt(DataType.BIT, bit=9, byte=Order.LITTLE)
    assert decode(swapped, [0x0002]) is True  # bit 9 lives in the byte that comes second
    assert encode(pt(DataType.BOOL), True) == [1] and encode(pt(DataType.BOOL), 0) == [0]


@pytest.mark.parametrize(
    ("point", "value", "message"),
    [
        (pt(DataType.UINT16), -1, "outside uint16"),
        (pt(DataType.UINT16), 65536, "outside uint16"),
        (pt(DataType.INT16), 40000, "outside int16"),
        (pt(DataType.UINT16, scale=0.1), 7000, "raw 70000"),
        (pt(DataType.UINT16, minimum=0, maximum=100), 101, "above the maximum 100"),
        (pt(DataType.UINT16, minimum=10), 5, "below the minimum 10"),
        (pt(DataType.UINT16), True, "expected a number"),
        (pt(DataType.UINT16), "50", "expected a number"),
        (pt(DataType.FLOAT32), math.nan, "finite"),
        (pt(DataType.FLOAT32), 1e39, "does not fit a float32"),
        (pt(DataType.BOOL), 2, "expected true/false"),
        (pt(DataType.BIT, bit=1), True, "whole register"),
    ],
)
def test_encode_refuses_bad_values(point: Point, value: object, message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        encode(point, value)  # type: ignore[arg-type]


def test_decode_refuses_nan_and_wrong_length() -> None:
    nan = struct.unpack(">HH", struct.pack(">f", math.nan))
    with pytest.raises(DecodeError, match="not a number"):
        decode(pt(DataType.FLOAT32), list(nan))
    with pytest.raises(DecodeError, match="expected 2"):
        decode(pt(DataType.INT32), [1])


# --- round trips --------------------------------------------------------------------

INT_RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
}
orders = st.sampled_from(ORDERS)
word = st.integers(0, 0xFFFF)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(INT_RANGES)), orders, st.data())
def test_integer_value_round_trip(
    dtype: DataType, order: tuple[Order, Order], data: st.DataObject
) -> None:
    low, high = INT_RANGES[dtype]
    value = data.draw(st.integers(low, high))
    point = pt(dtype, byte=order[0], word=order[1])
    words = encode(point, value)
    assert len(words) == dtype.registers and all(0 <= w <= 0xFFFF for w in words)
    assert decode(point, words) == value


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(INT_RANGES)), orders, st.lists(word, min_size=2, max_size=2))
def test_any_registers_decode_and_encode_back(
    dtype: DataType, order: tuple[Order, Order], words: list[int]
) -> None:
    point = pt(dtype, byte=order[0], word=order[1])
    words = words[: dtype.registers]
    assert encode(point, decode(point, words)) == words


@settings(max_examples=300, deadline=None)
@given(orders, st.lists(word, min_size=2, max_size=2))
def test_float32_registers_round_trip(order: tuple[Order, Order], words: list[int]) -> None:
    point = pt(DataType.FLOAT32, byte=order[0], word=order[1])
    try:
        value = decode(point, words)
    except DecodeError:
        return  # NaN/inf patterns are refused, never passed on
    back = encode(point, value)
    if value == 0:  # -0.0 and 0.0 are the same reading
        assert decode(point, back) == 0
    else:
        assert back == words


def words_of_float32(value: float) -> list[int]:
    raw = int.from_bytes(struct.pack(">f", value), "big")
    return [raw >> 16, raw & 0xFFFF]


@pytest.mark.parametrize(
    ("sent", "read"),
    [
        (229.81993, 229.81993),  # widened, it would read 229.81993103027344
        (0.1, 0.1),
        (1 / 3, 0.33333334),
        (49.98, 49.98),
        (3.4028234663852886e38, 3.4028235e38),  # the largest float32
        (1e-45, 1.4013e-45),  # the smallest subnormal
    ],
)
def test_float32_reads_as_the_digits_the_device_meant(sent: float, read: float) -> None:
    point = pt(DataType.FLOAT32)
    value = decode(point, words_of_float32(sent))
    assert value == read
    assert encode(point, value) == words_of_float32(sent)  # the same float32, nothing lost


def test_scaled_float32_is_rounded_like_scaled_integers() -> None:
    point = pt(DataType.FLOAT32, scale=0.001)
    assert decode(point, words_of_float32(229819.94)) == 229.81994  # the float32 holds 229819.9375


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([DataType.UINT16, DataType.INT16, DataType.UINT32, DataType.INT32]),
    st.sampled_from([0.1, 0.01, 0.001, 0.5, 2.0, 10.0]),
    st.sampled_from([0.0, -40.0, 273.15]),
    orders,
    st.data(),
)
def test_scaled_value_round_trip(
    dtype: DataType, scale: float, offset: float, order: tuple[Order, Order], data: st.DataObject
) -> None:
    low, high = INT_RANGES[dtype]
    raw = data.draw(st.integers(low, high))
    point = pt(dtype, byte=order[0], word=order[1], scale=scale, offset=offset)
    value = decode(point, encode(point, raw * scale + offset))
    assert value == pytest.approx(raw * scale + offset, abs=scale / 2)
    assert encode(point, value) == encode(point, raw * scale + offset)  # stable after one trip
