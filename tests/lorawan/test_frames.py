"""LoRaWAN 1.0.x frames against published vectors, round trips, counters and fuzzing."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.drivers.lorawan.fcnt import FrameCounters
from cityedge.drivers.lorawan.frames import (
    FrameError,
    MType,
    build_uplink,
    crypt_frm_payload,
    full_fcnt,
    parse_join_request,
    parse_uplink,
    verify_mic,
)
from cityedge.drivers.lorawan.keyring import SessionFileError, load_keyring

# The example of the lora-packet library (npm, README and examples/): an unconfirmed
# uplink whose FRMPayload decrypts to "test".
LORA_PACKET = {
    "frame": "40F17DBE4900020001954378762B11FF0D",
    "nwk_skey": "44024241ed4ce9a68c6a8bc055233fd3",
    "app_skey": "ec925802ae430ca77fd3dd73cb2cc588",
    "dev_addr": "49BE7DF1", "fcnt": 2, "fport": 1, "mic": "2b11ff0d", "plain": b"test",
}  # fmt: skip
# The example of the Semtech LoRaMac "lora-packet-decode" utility's README: a
# confirmed uplink with ADR set, FPort 0xAA, FCnt 0x01FF, payload "@ABC". (That README
# names the two keys the other way round; the MIC verifies with these roles.)
LORAMAC_UTIL = {
    "frame": "807856341280ff01aa792d344b87d20550",
    "nwk_skey": "443e25af51d680671891ba2eba421bd2",
    "app_skey": "cafebabe12345678cafebabe12345678",
    "dev_addr": "12345678", "fcnt": 0x01FF, "fport": 0xAA, "mic": "87d20550", "plain": b"@ABC",
}  # fmt: skip


@pytest.mark.parametrize("vector", [LORA_PACKET, LORAMAC_UTIL], ids=["lora-packet", "loramac"])
def test_published_vectors(vector: dict[str, object]) -> None:
    frame = bytes.fromhex(str(vector["frame"]))
    nwk, app = bytes.fromhex(str(vector["nwk_skey"])), bytes.fromhex(str(vector["app_skey"]))
    up = parse_uplink(frame)
    assert up.dev_addr_hex == vector["dev_addr"]
    assert up.fcnt16 == vector["fcnt"] and up.fport == vector["fport"]
    assert up.mic.hex() == vector["mic"]
    assert verify_mic(nwk, up, up.fcnt16)
    assert crypt_frm_payload(app, up.dev_addr, up.fcnt16, up.frm_payload) == vector["plain"]
    # and our encoder produces the very same bytes
    again = build_uplink(up.dev_addr, up.fcnt16, up.fport, vector["plain"], nwk, app,
                         confirmed=up.confirmed, adr=up.adr)  # fmt: skip
    assert again == frame


def test_a_flipped_bit_fails_the_mic() -> None:
    frame = bytearray(bytes.fromhex(LORA_PACKET["frame"]))  # type: ignore[arg-type]
    nwk = bytes.fromhex(LORA_PACKET["nwk_skey"])  # type: ignore[arg-type]
    for i in range(1, len(frame)):
        bad = bytearray(frame)
        bad[i] ^= 0x01
        with_flip = bytes(bad)
        try:
            up = parse_uplink(with_flip)
        except FrameError:
            continue
        assert not verify_mic(nwk, up, up.fcnt16), f"byte {i}"
    assert not verify_mic(bytes(16), parse_uplink(bytes(frame)), 2)  # wrong key


def test_fopts_and_port0() -> None:
    nwk, app = bytes(range(16)), bytes(range(16, 32))
    link_check_req = bytes([0x02])
    frame = build_uplink(0x26011BDA, 7, 5, b"\x01\x02", nwk, app, fopts=link_check_req + b"\x06")
    up = parse_uplink(frame)
    assert up.fopts == b"\x02\x06" and up.fport == 5 and verify_mic(nwk, up, 7)
    # FPort 0: MAC commands in the payload, encrypted with the network key
    frame0 = build_uplink(0x26011BDA, 8, 0, b"\x02", nwk, app)
    up0 = parse_uplink(frame0)
    assert crypt_frm_payload(nwk, up0.dev_addr, 8, up0.frm_payload) == b"\x02"
    # FOpts together with FPort 0 is not allowed
    raw = bytearray(frame)
    raw[raw.index(5, 8)] = 0  # the FPort byte after 2 bytes of FOpts
    with pytest.raises(FrameError) as err:
        parse_uplink(bytes(raw))
    assert err.value.reason == "fopts-with-port0"


def test_no_port_no_payload() -> None:
    frame = build_uplink(0x01020304, 1, None, b"", bytes(16), bytes(16))
    up = parse_uplink(frame)
    assert up.fport is None and up.frm_payload == b"" and len(frame) == 12


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "too-short"),
        (b"\x40" + bytes(10), "too-short"),
        (b"\x40" + bytes(300), "too-long"),
        (b"\x60" + bytes(15), "not-uplink"),  # unconfirmed down
        (b"\x41" + bytes(15), "bad-major"),
        (b"\x40\x01\x02\x03\x04\x0f\x00\x00" + bytes(6), "truncated"),  # FOptsLen 15
    ],
)
def test_malformed_frames_name_the_reason(frame: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as err:
        parse_uplink(frame)
    assert err.value.reason == reason and err.value.detail


def test_join_request_fields() -> None:
    frame = bytes([0x00]) + bytes(range(1, 9)) + bytes(range(9, 17)) + b"\x34\x12" + bytes(4)
    join = parse_join_request(frame)
    assert join.join_eui == "0807060504030201" and join.dev_eui == "100F0E0D0C0B0A09"
    assert join.dev_nonce == 0x1234
    with pytest.raises(FrameError):
        parse_uplink(frame)


@pytest.mark.parametrize(
    ("fcnt16", "last", "expected"),
    [
        (5, None, 5),
        (6, 5, 6),
        (5, 5, 5),  # replay: the same
        (3, 5, 3),  # replay: older
        (0x0002, 0xFFFE, 0x10002),  # roll-over of the low half
        (0x0000, 0x1FFFF, 0x20000),
        (0x8000, 0x10005, 0x18000),  # a big gap forward, no roll-over
    ],
)
def test_full_frame_counter(fcnt16: int, last: int | None, expected: int) -> None:
    assert full_fcnt(fcnt16, last) == expected


@settings(max_examples=10_000, deadline=None)
@given(st.one_of(
    st.binary(max_size=300),
    st.builds(lambda head, rest: bytes([head]) + rest,
              st.sampled_from([0x40, 0x80, 0x00, 0x41, 0xE0]), st.binary(max_size=64)),
))  # fmt: skip
def test_fuzz_parse_uplink_only_raises_frame_error(data: bytes) -> None:
    try:
        up = parse_uplink(data)
    except FrameError:
        return
    assert up.mtype in (MType.UNCONFIRMED_UP, MType.CONFIRMED_UP)
    assert len(up.mic) == 4 and len(up.fopts) <= 15
    verify_mic(bytes(16), up, up.fcnt16)


# --- frame counters on disk -----------------------------------------------------------


def test_counters_survive_a_restart_and_count_gaps(tmp_path: Path) -> None:
    path = tmp_path / "fcnt.db"
    counters = FrameCounters(path)
    assert counters.check(0xAA, 10).replay is False
    counters.accept(0xAA, 10)
    verdict = counters.check(0xAA, 14)
    assert verdict == type(verdict)(14, replay=False, lost=3)
    counters.accept(0xAA, 14)
    counters.close()
    again = FrameCounters(path)
    assert again.check(0xAA, 14).replay and again.check(0xAA, 9).replay
    assert not again.check(0xAA, 15).replay
    assert again.check(0xBB, 0).replay is False  # another device has its own window


def test_a_corrupt_counter_file_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "fcnt.db"
    path.write_bytes(b"this is not a database" * 100)
    counters = FrameCounters(path)
    assert counters.set_aside is not None and counters.set_aside.exists()
    counters.accept(1, 1)
    assert counters.last(1) == 1


# --- session keys --------------------------------------------------------------------

NWK, APP = "0123456789ABCDEF0123456789ABCDEF", "FEDCBA9876543210FEDCBA9876543210"


def key_file(tmp_path: Path, body: str, mode: int = 0o600) -> Path:
    path = tmp_path / "sessions.toml"
    path.write_text(body)
    path.chmod(mode)
    return path


def device(name: str = "bin-1", addr: str = "26011BDA", nwk: str = NWK, **extra: str) -> str:
    lines = [f'name = "{name}"', 'type = "waste-bin"', f'dev_addr = "{addr}"',
             f'nwk_skey = "{nwk}"', f'app_skey = "{APP}"']  # fmt: skip
    lines += [f'{k} = "{v}"' for k, v in extra.items()]
    return "[[device]]\n" + "\n".join(lines) + "\n"


def test_key_file_loads_and_hides_keys(tmp_path: Path) -> None:
    ring = load_keyring(key_file(tmp_path, device() + device("bin-2", "26011BDB")))
    session = ring[0x26011BDA]
    assert session.name == "bin-1" and session.key_for(0) == bytes.fromhex(NWK)
    assert session.key_for(1) == bytes.fromhex(APP)
    for text in (repr(session), str(session), repr(ring)):
        assert NWK not in text.upper() and APP not in text.upper()


@pytest.mark.parametrize(
    ("body", "mode", "expected"),
    [
        (device(), 0o644, "chmod 600"),
        (device(nwk="XYZ"), 0o600, "device[0].nwk_skey: expected 32 hex digits"),
        (device(addr="26011"), 0o600, "device[0].dev_addr: expected 8 hex digits"),
        (device() + device(), 0o600, "device[1].name: 'bin-1' is listed twice"),
        (device() + device("bin-2"), 0o600, "device[1].dev_addr: 26011BDA is listed twice"),
        (device(colour="red"), 0o600, "device[0]: unknown key(s) colour"),
        ("[[device]\n", 0o600, "not valid TOML"),
    ],
)
def test_key_file_errors_name_the_place(
    tmp_path: Path, body: str, mode: int, expected: str
) -> None:
    with pytest.raises(SessionFileError) as err:
        load_keyring(key_file(tmp_path, body, mode))
    assert expected in str(err.value)
    assert "sessions.toml" in str(err.value)


def test_a_bad_key_is_not_echoed(tmp_path: Path) -> None:
    almost = "0123456789ABCDEF0123456789ABCDEZ"
    with pytest.raises(SessionFileError) as err:
        load_keyring(key_file(tmp_path, device(nwk=almost)))
    assert almost not in str(err.value)


def test_struct_layout_sanity() -> None:
    # B0 / A_i blocks are 16 bytes: what the CMAC and the keystream need.
    assert struct.calcsize("<B4xBIIxB") == 16
