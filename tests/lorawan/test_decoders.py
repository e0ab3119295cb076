"""LoRaWAN payload codecs: published Cayenne LPP examples, the shipped device types'
documented vectors, every malformed case, bad device-type files, and fuzzing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.drivers.lorawan.codec import CodecError, decode
from cityedge.drivers.lorawan.decoders import (
    SHIPPED_DEVICE_TYPES,
    DeviceTypeError,
    load_device_type,
    load_device_types,
)
from cityedge.drivers.lorawan.devicetype import DecodedPoint, DeviceType, breached
from cityedge.drivers.lorawan.encodings import LPP_TYPES

DOC = Path(__file__).resolve().parents[2] / "docs" / "lorawan-devices.md"
SHIPPED = load_device_types()


def _lpp(payload: str, fport: int = 1) -> dict[str, object]:
    return {p.name: p.value for p in decode(SHIPPED["cayenne-lpp"], fport, bytes.fromhex(payload))}


# --- Cayenne LPP against its documentation ---------------------------------------
# Examples from the Cayenne LPP documentation (docs.mydevices.com, "Cayenne Low
# Power Payload", section "Examples"), bytes and values as published there.


def test_lpp_documented_two_temperatures() -> None:
    assert _lpp("03670110056700FF") == {"temperature_3": 27.2, "temperature_5": 25.5}


def test_lpp_documented_temperature_and_accelerometer() -> None:
    assert _lpp("0167FFD7067104D2FB2E0000") == {
        "temperature_1": -4.1,
        "accelerometer_6_x": 1.234,
        "accelerometer_6_y": -1.234,
        "accelerometer_6_z": 0.0,
    }


def test_lpp_documented_gps() -> None:
    assert _lpp("018806765FF2960A0003E8") == {
        "gps_1_latitude": 42.3519,
        "gps_1_longitude": -87.9094,
        "gps_1_altitude": 10.0,
    }


def test_lpp_other_types_hand_built() -> None:
    # Built by hand from the type table: channel, type code, big-endian data.
    records = [
        "02 68 61",  # humidity: 97 × 0.5 %
        "03 73 27 6F",  # barometer: 10095 × 0.1 hPa
        "04 65 01 F4",  # illuminance: 500 lx
        "05 00 01",  # digital input
        "06 86 FF 38 00 64 00 00",  # gyrometer: -200, 100, 0 × 0.01 °/s
        "07 87 FF 80 00",  # colour: r, g, b
        "08 74 01 68",  # voltage: 360 × 0.01 V
        "09 8E 01",  # switch
    ]
    got = _lpp("".join(records).replace(" ", ""))
    assert got == {
        "humidity_2": 48.5,
        "barometer_3": 1009.5,
        "illuminance_4": 500,
        "digital_input_5": 1,
        "gyrometer_6_x": -2.0,
        "gyrometer_6_y": 1.0,
        "gyrometer_6_z": 0.0,
        "colour_7_r": 255,
        "colour_7_g": 128,
        "colour_7_b": 0,
        "voltage_8": 3.6,
        "switch_9": 1,
    }


def test_lpp_units_come_from_the_type_table() -> None:
    points = decode(SHIPPED["cayenne-lpp"], 1, bytes.fromhex("03670110016844"))
    assert points == [
        DecodedPoint("temperature_3", 27.2, "°C"),
        DecodedPoint("humidity_1", 34.0, "%"),
    ]


def test_lpp_channel_names_from_the_device_type(tmp_path: Path) -> None:
    path = tmp_path / "kerb-thermometer.toml"
    path.write_text(
        'name = "kerb-thermometer"\ncodec = "cayenne-lpp"\ninterval_s = 900\nfport = [5]\n'
        '[[channel]]\nchannel = 3\ntype = "temperature"\nname = "road_surface"\n'
        '[[channel]]\nchannel = 6\ntype = "accelerometer"\nname = "mast"\n'
        '[[alarm]]\npoint = "road_surface"\nat_or_below = 0.5\nevent = "road.ice"\n',
        encoding="utf-8",
    )
    dt = load_device_type(path)
    assert [p.name for p in dt.points] == ["road_surface", "mast_x", "mast_y", "mast_z"]
    got = {p.name: p.value for p in decode(dt, 5, bytes.fromhex("0367011005670005"))}
    # Channel 5 is not mapped: it keeps the default name.
    assert got == {"road_surface": 27.2, "temperature_5": 0.5}
    with pytest.raises(CodecError, match=r"kerb-thermometer: byte 0: FPort 1: expected FPort 5"):
        decode(dt, 1, bytes.fromhex("03670110"))


# --- the shipped device types against the vectors of docs/lorawan-devices.md ---------


def _doc_vectors() -> list[tuple[str, int, bytes, list[tuple[str, str, str | None]]]]:
    blocks = re.findall(r"```vector\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    vectors = []
    for block in blocks:
        lines = block.strip().splitlines()
        head = dict(line.split(": ", 1) for line in lines[:3])
        values = []
        for line in lines[3:]:
            name, _, rest = line.partition(" = ")
            text, _, unit = rest.partition(" ")
            values.append((name, text, unit or None))
        vectors.append((head["type"], int(head["fport"]), bytes.fromhex(head["payload"]), values))
    return vectors


VECTORS = _doc_vectors()


def _parse(text: str) -> object:
    if text in ("true", "false"):
        return text == "true"
    return float(text) if "." in text else int(text)


def test_every_shipped_type_has_a_documented_vector() -> None:
    assert {v[0] for v in VECTORS} == set(SHIPPED)
    assert len(VECTORS) >= 10


@pytest.mark.parametrize(
    ("type_name", "fport", "payload", "expected"),
    VECTORS,
    ids=[f"{v[0]}-{v[2].hex()}" for v in VECTORS],
)
def test_documented_vector(
    type_name: str, fport: int, payload: bytes, expected: list[tuple[str, str, str | None]]
) -> None:
    got = decode(SHIPPED[type_name], fport, payload)
    assert [(p.name, p.value, p.unit) for p in got] == [
        (name, _parse(text), unit) for name, text, unit in expected
    ]
    for p in got:  # bools stay bools, whole-number points stay ints
        assert type(p.value) is type(_parse(next(t for n, t, _ in expected if n == p.name)))


def test_documented_points_are_the_declared_points() -> None:
    for type_name, _, _, expected in VECTORS:
        declared = {p.name: p.unit for p in SHIPPED[type_name].points}
        for name, _, unit in expected:
            if SHIPPED[type_name].codec == "layout":
                assert declared[name] == unit, (type_name, name)


def test_shipped_alarms_and_intervals() -> None:
    bin_ = SHIPPED["waste-bin"]
    alarms = {a.event: a for a in bin_.alarms}
    assert alarms["bin.full"].point == "fill"
    assert alarms["bin.full"].at_or_above == 90
    assert alarms["bin.fire"].point == "temperature"
    assert alarms["bin.fire"].at_or_above == 60
    assert alarms["bin.fire"].severity == "critical"
    for dt in SHIPPED.values():
        assert dt.interval_s > 0
        names = {p.name for p in dt.points}
        assert all(a.point in names for a in dt.alarms)


def test_breached_follows_the_thresholds() -> None:
    alarms = {a.event: a for a in SHIPPED["waste-bin"].alarms}
    full, fire, tipped = alarms["bin.full"], alarms["bin.fire"], alarms["bin.tipped"]
    assert [breached(full, v) for v in (89.9, 90, 90.0, 100.0)] == [False, True, True, True]
    assert [breached(fire, v) for v in (59.9, 60.0, 64.3, float("nan"))] == [
        False,
        True,
        True,
        False,
    ]
    assert breached(tipped, True) and not breached(tipped, False)
    assert not breached(full, "90")
    low = SHIPPED["parking-sensor"].alarms[0]
    assert [breached(low, v) for v in (5.8, 10.0, 10.1)] == [True, True, False]


def test_fill_is_clamped_and_follows_the_bin_depth() -> None:
    bin_ = SHIPPED["waste-bin"]

    def fill(distance_mm: int) -> object:
        payload = distance_mm.to_bytes(2, "big") + bytes.fromhex("00D70300 0E1C".replace(" ", ""))
        return {p.name: p.value for p in decode(bin_, 1, payload)}["fill"]

    assert fill(0) == 100.0
    assert fill(1100) == 0.0
    assert fill(3000) == 0.0  # echo off the pavement through a missing floor
    assert fill(550) == 50.0


# --- malformed payloads: CodecError naming type, offset, expectation ----------------


@pytest.mark.parametrize(
    ("type_name", "fport", "payload", "message"),
    [
        ("cayenne-lpp", 1, "", r"cayenne-lpp: byte 0: empty payload"),
        ("cayenne-lpp", 1, "03", r"cayenne-lpp: byte 0: truncated: expected a channel byte"),
        ("cayenne-lpp", 1, "036701", r"byte 2: truncated temperature on channel 3: expected 2"),
        ("cayenne-lpp", 1, "03670110 0567 00", r"byte 6: truncated temperature on channel 5"),
        ("cayenne-lpp", 1, "0688067665", r"byte 2: truncated GPS on channel 6: expected 9"),
        ("cayenne-lpp", 1, "03670110 0477 00", r"byte 5: unknown Cayenne LPP type 119 \(0x77\)"),
        ("cayenne-lpp", 1, "03670110 03670111", r"byte 4: channel 3 type 103 repeated"),
        ("cayenne-lpp", 0, "03670110", r"cayenne-lpp: byte 0: FPort 0: application ports"),
        ("cayenne-lpp", 224, "03670110", r"FPort 224: application ports are 1..223"),
        ("waste-bin", 1, "", r"waste-bin: byte 0: truncated at distance \(u16be\): expected 8"),
        ("waste-bin", 1, "00DC00D703000E", r"waste-bin: byte 6: truncated at battery \(u16be\)"),
        ("waste-bin", 1, "00DC00D703000E1C00", r"waste-bin: byte 8: wrong length: expected 8"),
        ("waste-bin", 2, "00DC00D703000E1C", r"waste-bin: byte 0: FPort 2: .*expected FPort 1"),
        ("environment-station", 1, "027001", r"environment-station: byte 2: truncated at no2"),
        ("parking-sensor", 1, "0100", r"parking-sensor: byte 1: wrong length: expected 1 bytes"),
        ("parking-sensor", 2, "01", r"parking-sensor: byte 1: truncated at battery"),
        ("parking-sensor", 3, "01", r"parking-sensor: byte 0: FPort 3: .*FPort 1 or 2"),
    ],
)
def test_malformed_payload_names_where(
    type_name: str, fport: int, payload: str, message: str
) -> None:
    with pytest.raises(CodecError, match=message) as caught:
        decode(SHIPPED[type_name], fport, bytes.fromhex(payload.replace(" ", "")))
    assert caught.value.device_type == type_name
    assert str(caught.value).startswith(f"{type_name}: byte {caught.value.offset}: ")


# --- fuzzing: nothing but readings or CodecError ----------------------------------
# 4 shipped types × 2,500 random payloads, plus structured LPP: > 10,000 examples.


@pytest.mark.parametrize("type_name", sorted(SHIPPED))
@settings(max_examples=2500, deadline=None)
@given(fport=st.integers(min_value=-2, max_value=260), payload=st.binary(max_size=64))
def test_fuzz_decode_only_raises_codec_error(type_name: str, fport: int, payload: bytes) -> None:
    dt = SHIPPED[type_name]
    try:
        points = decode(dt, fport, payload)
    except CodecError as err:
        assert str(err).startswith(f"{type_name}: byte ")
        assert 0 <= err.offset <= len(payload)
        return
    assert all(isinstance(p, DecodedPoint) for p in points)
    if dt.codec == "layout":
        declared = {p.name for p in dt.points}
        assert {p.name for p in points} <= declared


@pytest.mark.parametrize("type_name", ["environment-station", "parking-sensor", "waste-bin"])
@settings(max_examples=1000, deadline=None)
@given(data=st.data())
def test_fuzz_layout_near_the_right_length(type_name: str, data: st.DataObject) -> None:
    # Random bytes rarely hit a layout's port and length; these always do, or nearly.
    dt = SHIPPED[type_name]
    frame = data.draw(st.sampled_from(dt.frames))
    port = data.draw(st.sampled_from(sorted(frame.fports or {1})))
    length = frame.length + data.draw(st.sampled_from([0, 0, 0, -1, 1, -frame.length]))
    payload = data.draw(st.binary(min_size=length, max_size=length))
    if length != frame.length:
        with pytest.raises(CodecError) as caught:
            decode(dt, port, payload)
        if length > frame.length:
            assert caught.value.offset == frame.length
        else:
            assert 0 <= caught.value.offset <= length
        return
    points = decode(dt, port, payload)
    names = [p.name for p in points]
    assert len(names) == len(set(names))
    fill = next((p.value for p in points if p.name in ("fill", "battery_percent")), 50.0)
    assert isinstance(fill, float) and 0.0 <= fill <= 100.0


@settings(max_examples=1000, deadline=None)
@given(
    records=st.lists(
        st.tuples(st.integers(0, 255), st.sampled_from(sorted(LPP_TYPES)), st.binary(min_size=9)),
        min_size=1,
        max_size=8,
        unique_by=lambda r: (r[0], r[1]),
    )
)
def test_fuzz_well_formed_lpp_always_decodes(records: list[tuple[int, int, bytes]]) -> None:
    payload = b"".join(
        bytes([ch, code]) + data[: LPP_TYPES[code].data_size] for ch, code, data in records
    )
    points = decode(SHIPPED["cayenne-lpp"], 1, payload)
    assert len(points) == sum(max(1, len(LPP_TYPES[code].axes)) for _, code, _ in records)


@pytest.mark.parametrize("type_name", ["waste-bin", "environment-station", "parking-sensor"])
def test_right_length_payloads_of_any_content_decode(type_name: str) -> None:
    dt: DeviceType = SHIPPED[type_name]
    for frame in dt.frames:
        port = min(frame.fports or {1})
        for fill_byte in (0x00, 0x7F, 0x80, 0xFF):
            points = decode(dt, port, bytes([fill_byte]) * frame.length)
            assert points, (type_name, port, fill_byte)


# --- device-type files: errors name the file and the key path ----------------------


def _problems(tmp_path: Path, name: str, text: str) -> tuple[str, list[str]]:
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DeviceTypeError) as caught:
        load_device_type(path)
    assert caught.value.source == str(path)
    assert str(caught.value).startswith(f"{path}: ")
    return str(caught.value), caught.value.problems


_BIN = (SHIPPED_DEVICE_TYPES / "waste-bin.toml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (("scale = 0.1", "scal = 0.1"), "frame[0].field[1].scal: unknown key"),
        (('type = "s16be"', 'type = "s17be"'), "frame[0].field[1].type: should be"),
        (("interval_s = 3600", "interval_s = -1"), "interval_s: should be greater than 0"),
        (("interval_s = 3600", ""), "interval_s: required key is missing"),
        (('point = "fill"', 'point = "fil"'), "alarm[0].point: 'fil' is not a point of waste-bin"),
        (("at_or_above = 90", ""), "alarm[0]: give exactly one of"),
        (('event = "bin.full"', 'event = "full"'), "alarm[0].event: should match"),
        (("equals = true", "at_or_above = 1"), "alarm[2]: 'tipped' is a flag"),
        (("bin_depth_mm = 1100", "bin_depth_mm = 0"), "parameters: bin_depth_mm must be above"),
        (("bin_depth_mm = 1100", "bin_height_mm = 1100"), "parameters.bin_height_mm: no deriv"),
        (("bin_depth_mm = 1100", ""), "parameters: fill_percent (frame[0].derive[0]) needs"),
        (('source = "distance"', 'source = "tilt"'), "frame[0].derive[0].source: fill_percent"),
        (("bit = 7 }", "bit = 8 }"), "frame[0].field[3].bits[2]: bits 8..8 are outside u8"),
        (("missing = 65535", "missing = 70000"), "frame[0].field[0].missing: 70000 is outside"),
        (('name = "waste-bin"', 'name = "dustbin"'), "name: 'dustbin' differs from the file"),
        (('codec = "layout"', 'codec = "cayenne-lpp"'), "frame: only a layout codec has frames"),
        (
            ("fport = [1]", "fport = [0]"),
            "frame[0].fport[0]: out of range: should be greater than or",
        ),
    ],
)
def test_bad_device_type_names_file_and_key(
    tmp_path: Path, edit: tuple[str, str], problem: str
) -> None:
    old, new = edit
    assert old in _BIN
    message, problems = _problems(tmp_path, "waste-bin", _BIN.replace(old, new, 1))
    assert any(p.startswith(problem) for p in problems), problems
    assert "waste-bin.toml" in message


def test_unknown_lpp_type_in_channel_map(tmp_path: Path) -> None:
    _, problems = _problems(
        tmp_path,
        "kerb",
        'name = "kerb"\ncodec = "cayenne-lpp"\ninterval_s = 60\n'
        '[[channel]]\nchannel = 1\ntype = "thermometer"\nname = "t"\n',
    )
    assert problems[0].startswith("channel[0].type: unknown Cayenne LPP type 'thermometer'")


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    _, problems = _problems(tmp_path, "broken", 'name = "broken"\ncodec = \n')
    assert problems[0].startswith("not valid TOML: ")
    with pytest.raises(DeviceTypeError, match=r"absent\.toml: cannot read"):
        load_device_type(tmp_path / "absent.toml")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = _BIN.replace('point = "fill"', 'point = "fil"').replace(
        "bin_depth_mm = 1100", "bin_depth_mm = -5"
    )
    _, problems = _problems(tmp_path, "waste-bin", text)
    assert len(problems) == 2


def test_a_later_folder_overrides_a_shipped_type(tmp_path: Path) -> None:
    (tmp_path / "waste-bin.toml").write_text(
        _BIN.replace("bin_depth_mm = 1100", "bin_depth_mm = 800"), encoding="utf-8"
    )
    types = load_device_types([SHIPPED_DEVICE_TYPES, tmp_path])
    assert set(types) == set(SHIPPED)
    got = {
        p.name: p.value for p in decode(types["waste-bin"], 1, bytes.fromhex("019000D703000E1C"))
    }
    assert got["fill"] == 50.0  # 400 mm down an 800 mm bin
    with pytest.raises(DeviceTypeError, match="not a folder"):
        load_device_types([tmp_path / "nowhere"])
