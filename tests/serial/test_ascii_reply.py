"""Answer lines → values, write checks before the wire, and hypothesis fuzzing of the
response matcher (random lines, mangled answers, round trips)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.drivers.ascii.points import DecodeError, Point, PointType
from cityedge.drivers.ascii.profile import parse_profile, resolve_profile
from cityedge.drivers.ascii.reply import BadReply, Refused, check_write_answer, parse_reply
from cityedge.sdk.model import InvalidValue

PANEL = resolve_profile("info-panel")
STATUS = PANEL.requests["status"]


def test_a_status_answer() -> None:
    line = b'STATUS FAULT TEMP=-4.5 BRIGHT=100 MSG="Line 4: 3 min"'
    assert parse_reply(PANEL, STATUS, line) == {
        "fault": True, "temperature": -4.5, "brightness": 100, "message": "Line 4: 3 min"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("line", "reason", "says"),
    [
        (b'STATUS OK TEMP=23.5 BRIGHT=80 MSG="unterminated', "mismatch", "does not match"),
        (b"STATUS OK TEMP=23.5", "mismatch", "does not match"),
        (b'status ok temp=23.5 bright=80 msg=""', "mismatch", "does not match"),
        (b'STATUS OK TEMP=23.5 BRIGHT=80 MSG="\xe9t\xe9"', "decode", "not ascii text"),
        (b"", "mismatch", "does not match"),
        (b"OK", "mismatch", "does not match"),
    ],
)
def test_bad_answers_say_why(line: bytes, reason: str, says: str) -> None:
    with pytest.raises(BadReply) as bad:
        parse_reply(PANEL, STATUS, line)
    assert bad.value.reason == reason and says in bad.value.detail


def test_an_error_answer_is_a_refusal_with_its_code() -> None:
    with pytest.raises(Refused) as refused:
        parse_reply(PANEL, STATUS, b"ERR 1")
    assert refused.value.code == "1"
    assert str(refused.value) == "device answered 'ERR 1'"
    message = PANEL.points["message"]
    check_write_answer(PANEL, message, b"OK")
    with pytest.raises(Refused, match="ERR 2"):
        check_write_answer(PANEL, message, b"ERR 2")
    with pytest.raises(BadReply, match="is not 'OK'"):
        check_write_answer(PANEL, message, b"OKAY")


def test_decoding_by_type_with_scale() -> None:
    tenth = Point("t", PointType.INT, "r", "t", scale=0.1)
    assert tenth.decode("235") == 23.5 and tenth.info().kind == "float"
    assert Point("n", PointType.INT, "r", "n").decode("-7") == -7
    on_off = Point("b", PointType.BOOL, "r", "b", on="ON", off="OFF")
    assert on_off.decode("ON") is True and on_off.decode("OFF") is False
    for point, text in [(on_off, "on"), (tenth, "2.5"), (tenth, "1_0"),
                        (Point("f", PointType.FLOAT, "r", "f"), "nan"),
                        (Point("f", PointType.FLOAT, "r", "f"), "1e999")]:  # fmt: skip
        with pytest.raises(DecodeError):
            point.decode(text)


@pytest.mark.parametrize(
    ("point", "value", "says"),
    [
        ("message", "x" * 65, "65 characters, at most 64"),
        ("message", 'say "hi"', "characters outside the allowed set"),
        ("message", "two\r\nlines", "control character '\\r'"),
        ("message", "tab\there", "control character '\\t'"),
        ("message", 42, "expected text"),
        ("brightness", 101, "above the maximum 100"),
        ("brightness", -1, "below the minimum 0"),
        ("brightness", 40.5, "expected a whole number"),
        ("brightness", True, "expected a number"),
        ("brightness", "80", "expected a number"),
        ("brightness", math.nan, "expected a finite number"),
        ("brightness", math.inf, "expected a finite number"),
    ],
)
def test_write_values_are_checked_before_the_wire(point: str, value: object, says: str) -> None:
    with pytest.raises(InvalidValue) as invalid:
        PANEL.points[point].encode(value)  # type: ignore[arg-type]
    assert says in str(invalid.value) and str(invalid.value).startswith(point)


def test_good_write_values_and_their_wire_form() -> None:
    assert PANEL.points["message"].encode("Line 4: 3 min") == "Line 4: 3 min"
    assert PANEL.points["brightness"].encode(40) == 40
    assert PANEL.points["brightness"].encode(40.0) == 40
    scaled = Point("s", PointType.INT, "r", "s", scale=0.1, minimum=0, maximum=50)
    assert scaled.encode(23.5) == 235
    on_off = Point("b", PointType.BOOL, "r", "b", on="UP", off="DOWN")
    assert (on_off.encode(True), on_off.encode(0)) == ("UP", "DOWN")
    with pytest.raises(InvalidValue):
        on_off.encode("UP")
    chosen = Point("c", PointType.TEXT, "r", "c", choices=("UP", "DOWN"))
    with pytest.raises(InvalidValue, match="not one of UP, DOWN"):
        chosen.encode("HALF")


# --- fuzzing ------------------------------------------------------------------------


def _outcome(line: bytes) -> object:
    try:
        return parse_reply(PANEL, STATUS, line)
    except BadReply as exc:
        assert exc.reason in {"mismatch", "decode"} and exc.detail
        return exc
    except Refused as exc:
        assert line.startswith(b"ERR ")
        return exc


@settings(max_examples=2500, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_lines_never_crash_the_matcher(line: bytes) -> None:
    _outcome(line)


_MESSAGE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E,
                                          exclude_characters='"'), max_size=64)  # fmt: skip


@settings(max_examples=2500, deadline=None)
@given(
    fault=st.booleans(),
    temperature=st.decimals(min_value=-60, max_value=99, places=1, allow_nan=False),
    brightness=st.integers(min_value=0, max_value=100),
    message=_MESSAGE,
    cut=st.integers(min_value=0, max_value=200),
    junk=st.binary(max_size=4),
)
def test_fuzz_status_answers_round_trip_and_survive_mangling(
    fault: bool, temperature: object, brightness: int, message: str, cut: int, junk: bytes
) -> None:
    line = (f'STATUS {"FAULT" if fault else "OK"} TEMP={temperature} BRIGHT={brightness} '
            f'MSG="{message}"').encode()  # fmt: skip
    assert parse_reply(PANEL, STATUS, line) == {
        "fault": fault, "temperature": float(str(temperature)), "brightness": brightness,
        "message": message,
    }  # fmt: skip
    _outcome(line[: cut % (len(line) + 1)])  # cut short anywhere
    at = cut % (len(line) + 1)
    _outcome(line[:at] + junk + line[at:])  # noise anywhere


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_fuzz_any_written_text_is_refused_or_safe_on_the_wire(text: str) -> None:
    point = PANEL.points["message"]
    try:
        wire = point.encode(text)
    except InvalidValue:
        return
    rendered = (point.write or "").format(value=wire) + PANEL.terminator
    assert rendered.count("\r\n") == 1 and rendered.endswith("\r\n")
    rendered.encode(PANEL.encoding)  # never a character the line cannot carry
    assert isinstance(wire, str) and '"' not in wire and len(wire) <= 64


def test_optional_groups_left_out_give_no_value() -> None:
    raw = {
        "device": {"type": "bollard"},
        "requests": [{"name": "state", "send": "POS?",
                      "expect": r"POS (?P<position>UP|DOWN)(?: LOAD=(?P<load>\d+))?"}],
        "points": [
            {"name": "position", "type": "text", "read": "state", "choices": ["UP", "DOWN"],
             "access": "rw", "write": "SET {value}"},
            {"name": "load", "type": "int", "read": "state", "unit": "kg"},
        ],
    }  # fmt: skip
    bollard = parse_profile(raw, Path("bollard.toml"))
    request = bollard.requests["state"]
    assert parse_reply(bollard, request, b"POS UP") == {"position": "UP"}
    assert parse_reply(bollard, request, b"POS DOWN LOAD=12") == {"position": "DOWN", "load": 12}
    assert bollard.points["position"].info().choices == ("UP", "DOWN")
