"""The line framer: any line ending, any chunking, bounded memory, resync after garbage."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.drivers.serialline.framer import LineFramer


def test_lines_end_at_crlf_lf_or_cr_and_empty_lines_are_skipped() -> None:
    framer = LineFramer(64)
    assert framer.feed(b"one\r\ntwo\nthree\rfour") == [b"one", b"two", b"three"]
    assert framer.pending == 4
    assert framer.feed(b"\r\n\r\n\n") == [b"four"]
    assert framer.pending == 0


def test_byte_at_a_time_gives_the_same_lines() -> None:
    stream = b"$GPGGA,1*00\r\n$GPRMC,2*00\r\n\r\nSTATUS OK\n"
    framer = LineFramer(64)
    lines = [line for byte in stream for line in framer.feed(bytes([byte]))]
    assert lines == [b"$GPGGA,1*00", b"$GPRMC,2*00", b"STATUS OK"]


def test_a_10kB_garbage_line_is_counted_dropped_and_the_next_line_arrives() -> None:
    framer = LineFramer(256)
    garbage = bytes(range(14, 256)) * 42  # ~10 kB with no CR/LF in it
    assert len(garbage) > 10_000
    lines = []
    for i in range(0, len(garbage), 1000):  # as a UART would deliver it: in chunks
        lines += framer.feed(garbage[i : i + 1000])
        assert framer.pending <= 256  # memory stays bounded while the garbage flows
    lines += framer.feed(b"\r\n$GPGGA,ok*00\r\n")
    assert lines == [b"$GPGGA,ok*00"]
    assert framer.overlong == 1


def test_a_line_of_exactly_max_line_passes_one_more_byte_does_not() -> None:
    framer = LineFramer(8)
    assert framer.feed(b"12345678\n123456789\nok\n") == [b"12345678", b"ok"]
    assert framer.overlong == 1


def test_reset_forgets_a_partial_line() -> None:
    framer = LineFramer(16)
    framer.feed(b"half a li")
    framer.reset()
    assert framer.feed(b"ne\nwhole\n") == [b"ne", b"whole"]


def test_max_line_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_line"):
        LineFramer(0)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(
        st.binary(min_size=1, max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b),
        max_size=20,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30),
)
def test_chunking_never_changes_the_lines(lines: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(line + b"\r\n" for line in lines)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    framer = LineFramer(40)
    out = []
    for start, end in itertools.pairwise(points):
        out += framer.feed(stream[start:end])
    assert out == lines
    assert framer.overlong == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_any_bytes_give_bounded_lines_and_bounded_memory(chunks: list[bytes]) -> None:
    framer = LineFramer(64)
    for chunk in chunks:
        for line in framer.feed(chunk):
            assert 0 < len(line) <= 64
            assert b"\r" not in line and b"\n" not in line
        assert framer.pending <= 64
