"""BTHome v2 decoding against the format's published examples, and fuzzing.

Sources of the vectors (cited per case below):
- bthome.io/format  — the advertisement example and the per-object examples of the
  "Sensor data" table (id + little-endian bytes → value);
- bthome.io/encryption — the encryption walk-through: data 02CA09 03BF13, key
  231d39c1d7cc1ab1aee224cd096db932, MAC 5448E68F80A5, counter 00112233;
- github.com/Bluetooth-Devices/bthome-ble tests/test_parser_v2.py — full service-data
  values with expected readings (test_bindkey_correct, test_bindkey_wrong,
  test_mac_as_name, test_has_incorrect_version, test_sleepy_device,
  test_shelly_blu_ht_display_zb, test_encryption_downgrade_fails);
- bthome-ble issue #118 — a real sensor's frame broken down by the maintainer.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cityedge.drivers.ble.bthome import (
    OBJECT_TYPES,
    POINT_NAMES,
    BTHomeError,
    Packet,
    decode,
    encode,
    encrypt,
    point_type,
)

KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
MAC = bytes.fromhex("5448E68F80A5")


def values(packet: Packet) -> dict[str, object]:
    return {m.point: m.value for m in packet.measurements}


# bthome.io/format, "Sensor data" table: object bytes → (point, value). The page shows
# each object alone; we prefix the plain v2 device-info byte 0x40.
FORMAT_TABLE = [
    ("0161", "battery", 97),
    ("12E204", "co2", 1250),
    ("0960", "count", 96),
    ("3D0960", "count", 24585),
    ("3E2A2C0960", "count", 1611213866),
    ("59EA", "count", -22),
    ("5AEAEA", "count", -5398),
    ("5BEA0234EA", "count", -365690134),
    ("434E34", "current", 13.39),
    ("5D02EA", "current", -5.63),
    ("08CA06", "dew_point", 17.38),
    ("400C00", "distance_mm", 12),
    ("414E00", "distance_m", 7.8),
    ("424E3400", "duration", 13.39),
    ("4D12138A14", "energy", 344593.17),
    ("0A138A14", "energy", 1346.067),
    ("4B138A14", "gas", 1346.067),
    ("4C41018A01", "gas", 25821.505),
    ("03BF13", "humidity", 50.55),
    ("2E23", "humidity", 35),
    ("05138A14", "illuminance", 13460.67),
    ("065E1F", "mass_kg", 80.3),
    ("073E1D", "mass_lb", 74.86),
    ("14020C", "moisture", 30.74),
    ("2F23", "moisture", 35),
    ("0D120C", "pm25", 3090),
    ("0E021C", "pm10", 7170),
    ("0B021B00", "power", 69.14),
    ("04138A01", "pressure", 1008.83),
    ("3F020C", "rotation", 307.4),
    ("56E803", "conductivity", 1000),
    ("02CA09", "temperature", 25.06),
]


@pytest.mark.parametrize(("hex_object", "point", "expected"), FORMAT_TABLE)
def test_format_page_objects(hex_object: str, point: str, expected: object) -> None:
    packet = decode(bytes.fromhex("40" + hex_object))
    assert values(packet) == {point: expected}
    assert packet.unknown_object is None


def test_format_page_advertisement() -> None:
    # bthome.io/format: 020106 0B094449592D73656E736F72 0A16D2FC4002C40903BF13 — the
    # service-data element is 0A 16 D2FC | 40 02C409 03BF13 (bleak strips the UUID).
    packet = decode(bytes.fromhex("4002C40903BF13"))
    assert values(packet) == {"temperature": 25.0, "humidity": 50.55}
    assert not packet.encrypted and not packet.trigger_based


def test_real_sensor_frame_from_bthome_ble_issue_118() -> None:
    packet = decode(bytes.fromhex("40003f015e02820803ac170c830b"))
    assert packet.packet_id == 63
    assert values(packet) == {"battery": 94, "temperature": 21.78, "humidity": 60.6,
                              "voltage": 2.947}  # fmt: skip


def test_shelly_blu_ht_display_zb_from_bthome_ble() -> None:
    packet = decode(bytes.fromhex("40002e01641e012e34451601"))
    assert packet.packet_id == 46
    assert values(packet) == {"battery": 100, "light": True, "humidity": 52, "temperature": 27.8}


def test_pressure_and_trigger_based_flag_from_bthome_ble() -> None:
    assert values(decode(bytes.fromhex("4004138a01"))) == {"pressure": 1008.83}
    assert not decode(bytes.fromhex("4004138a01")).trigger_based
    assert decode(bytes.fromhex("4404138a01")).trigger_based  # test_sleepy_device


def test_encrypted_frame_with_published_key() -> None:
    # bthome-ble test_bindkey_correct: Shelly BLU H&T 54:48:E6:8F:80:A5, the encryption page key.
    frame = bytes.fromhex("41a47266c95f730011223378237214")
    packet = decode(frame, mac=MAC, bindkey=KEY)
    assert packet.encrypted
    assert values(packet) == {"temperature": 25.06, "humidity": 50.55}
    assert packet.counter == 0x33221100  # bytes 00 11 22 33, little-endian


def test_our_encryption_reproduces_the_published_frame() -> None:
    # bthome.io/encryption: nonce 5448e68f80a5 d2fc 41 00112233, data 02CA09 03BF13.
    sealed = encrypt(bytes.fromhex("4002ca0903bf13"), mac=MAC, bindkey=KEY, counter=0x33221100)
    assert sealed == bytes.fromhex("41a47266c95f730011223378237214")


def test_wrong_key_is_a_decrypt_error() -> None:
    # bthome-ble test_bindkey_wrong
    frame = bytes.fromhex("41d2fcefe52eb212d600112233bc38c966")
    with pytest.raises(BTHomeError) as info:
        decode(frame, mac=bytes.fromhex("A4C1388D18B2"),
               bindkey=bytes.fromhex("814aac74c4f17b6c1581e1ab87816b99"))  # fmt: skip
    assert info.value.reason == "decrypt"


def test_encrypted_frame_from_another_address_fails() -> None:
    frame = bytes.fromhex("41a47266c95f730011223378237214")
    with pytest.raises(BTHomeError, match="decrypt"):
        decode(frame, mac=bytes.fromhex("5448E68F80A6"), bindkey=KEY)


@pytest.mark.parametrize(
    ("frame", "kwargs", "reason"),
    [
        (
            "4004138a01",
            {"bindkey": KEY, "mac": MAC},
            "downgrade",
        ),  # test_encryption_downgrade_fails
        ("e102000c0404138a01", {}, "version"),  # test_has_incorrect_version (v7)
        ("", {}, "too_short"),
        ("41a47266c95f730011223378237214", {}, "no_key"),
        ("41a47266", {"bindkey": KEY, "mac": MAC}, "too_short"),
        ("4002ca", {}, "truncated"),
        ("4053", {}, "truncated"),
        ("405305414243", {}, "truncated"),
        ("40" + "00" * 300, {}, "too_long"),
    ],
)
def test_bad_frames_name_the_reason(frame: str, kwargs: dict[str, bytes], reason: str) -> None:
    with pytest.raises(BTHomeError) as info:
        decode(bytes.fromhex(frame), **kwargs)
    assert info.value.reason == reason


@pytest.mark.parametrize("info", [0x42, 0x48, 0x50, 0x5A, 0x43])
def test_reserved_device_info_bits_are_refused_not_decoded(info: int) -> None:
    # issue 19: a sensor that puts its MAC after an info byte with bit 1 set; read as
    # objects, A4:C1:38:… decoded to nonsense (-294 °C)
    frame = bytes([info]) + bytes.fromhex("a4c138b2f05d") + bytes.fromhex("02ca09")
    with pytest.raises(BTHomeError) as refused:
        decode(frame, mac=MAC, bindkey=KEY if info & 1 else None)
    assert refused.value.reason == "reserved"
    assert f"device info 0x{info:02x} sets reserved bit" in refused.value.detail


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 255).filter(lambda i: i >> 5 == 2 and i & 0x1A), st.binary(max_size=64))
def test_fuzz_any_reserved_bit_is_refused_whatever_follows(info: int, body: bytes) -> None:
    with pytest.raises(BTHomeError) as refused:
        decode(bytes([info]) + body, mac=MAC, bindkey=KEY if info & 1 else None)
    assert refused.value.reason == "reserved"


def test_unknown_object_keeps_what_came_before() -> None:
    packet = decode(bytes.fromhex("4002ca0903bf13" + "f7" + "0102"))
    assert values(packet) == {"temperature": 25.06, "humidity": 50.55}
    assert packet.unknown_object == 0xF7


def test_repeated_objects_binaries_text_and_buttons() -> None:
    frame = bytes.fromhex("4002ca0902c409110121003a043a003a0153024f4b")
    packet = decode(frame)
    assert values(packet) == {"temperature": 25.06, "temperature_2": 25.0, "opening": True,
                              "motion": False, "text": "OK"}  # fmt: skip
    # button objects: long press on the first, none on the second, press on the third
    assert [(t.point, t.action) for t in packet.triggers] == [("button", "long_press"),
                                                              ("button_3", "press")]  # fmt: skip


def test_point_names_cover_the_required_objects() -> None:
    for point in ["battery", "temperature", "humidity", "pressure", "illuminance", "voltage",
                  "power", "energy", "door", "opening", "moisture", "motion", "rotation",
                  "count"]:  # fmt: skip
        assert point in POINT_NAMES
    assert point_type("temperature_2") == OBJECT_TYPES[0x02]
    assert point_type("nonsense") is None


# --- round trips and fuzzing -------------------------------------------------------

_NUMERIC = [t for t in OBJECT_TYPES.values() if t.kind == "number"]


@st.composite
def objects(draw: st.DrawFn) -> list[tuple[int, int]]:
    chosen = draw(st.lists(st.sampled_from(_NUMERIC), max_size=6))
    out = []
    for kind in sorted(chosen, key=lambda k: k.object_id):
        bits = kind.size * 8
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if kind.signed else (0, 2**bits - 1)
        out.append((kind.object_id, draw(st.integers(low, high))))
    return out


@settings(max_examples=300, deadline=None)
@given(objects(), st.integers(0, 255), st.integers(0, 2**32 - 1), st.booleans())
def test_round_trip_plain_and_encrypted(
    raw_objects: list[tuple[int, int]], packet_id: int, counter: int, sealed: bool
) -> None:
    scaled = [(oid, raw * OBJECT_TYPES[oid].factor) for oid, raw in raw_objects]
    frame = encode(scaled, packet_id=packet_id)
    if sealed:
        frame = encrypt(frame, mac=MAC, bindkey=KEY, counter=counter)
    packet = decode(frame, mac=MAC, bindkey=KEY if sealed else None)
    assert packet.packet_id == packet_id
    assert packet.counter == (counter if sealed else None)
    decoded = [m.value for m in packet.measurements]
    for (oid, raw), value in zip(raw_objects, decoded, strict=True):
        kind = OBJECT_TYPES[oid]
        assert value == (raw if kind.factor == 1 else round(raw * kind.factor, kind.decimals))


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.binary(max_size=300),
    st.one_of(st.none(), st.binary(min_size=0, max_size=20)),
    st.one_of(st.none(), st.binary(min_size=0, max_size=8)),
)
def test_fuzz_random_bytes_only_raise_bthome_error(
    data: bytes, bindkey: bytes | None, mac: bytes | None
) -> None:
    try:
        decode(data, mac=mac, bindkey=bindkey)
    except BTHomeError as exc:
        assert exc.reason and exc.detail


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from([0x40, 0x44, 0x41, 0x45]), st.binary(max_size=64), st.booleans())
def test_fuzz_well_formed_headers_with_garbage_objects(
    info: int, body: bytes, with_key: bool
) -> None:
    try:
        decode(bytes([info]) + body, mac=MAC, bindkey=KEY if with_key else None)
    except BTHomeError as exc:
        assert exc.reason


@settings(max_examples=300, deadline=None)
@given(objects(), st.data())
def test_fuzz_one_flipped_bit_in_an_encrypted_frame_is_refused(
    raw_objects: list[tuple[int, int]], data: st.DataObject
) -> None:
    scaled = [(oid, raw * OBJECT_TYPES[oid].factor) for oid, raw in raw_objects]
    frame = bytearray(encrypt(encode(scaled), mac=MAC, bindkey=KEY, counter=7))
    position = data.draw(st.integers(0, len(frame) - 1))
    frame[position] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(BTHomeError) as info:
        decode(bytes(frame), mac=MAC, bindkey=KEY)
    # the flipped bit lands in the info byte (version/flags) or anywhere the MIC covers
    assert info.value.reason in {"decrypt", "version", "downgrade", "reserved"}
