"""LoRaWAN 1.0.x PHYPayloads (drivers/lorawan/frames.py) against other implementations' vectors.

test_frames.py holds the lora-packet README and LoRaMac utility vectors; these add frames
with FOpts, on FPort 0, with a bad MIC, join requests and downlinks, each taken from a
published test suite and cited where it is used. Every data frame is also re-encoded by our
encoder, so both directions are checked against someone else's bytes.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.drivers.lorawan.frames import (
    FrameError,
    MType,
    build_downlink,
    build_uplink,
    crypt_frm_payload,
    full_fcnt,
    mtype_of,
    parse_downlink,
    parse_join_request,
    parse_uplink,
    verify_mic,
)
from cityedge.drivers.lorawan.keyring import Session

ONES, TWOS = bytes([1]) * 16, bytes([2]) * 16
LORA_PACKET_NWK = bytes.fromhex("44024241ed4ce9a68c6a8bc055233fd3")
LORA_PACKET_APP = bytes.fromhex("ec925802ae430ca77fd3dd73cb2cc588")


@dataclass(frozen=True)
class Vector:
    source: str
    frame: str  # hex
    nwk_skey: bytes
    app_skey: bytes
    mtype: MType
    dev_addr: str
    adr: bool
    fcnt: int
    fopts: str
    fport: int | None
    plain: bytes
    mic: str


UP, CUP = MType.UNCONFIRMED_UP, MType.CONFIRMED_UP
VECTORS = [
    # brocaar/lorawan phypayload_test.go, TestPHYPayloadMACPayloadLoRaWAN10 "FRMPayload data"
    # (given there as base64 "QAQDAgGAAQABppRkJhXWw7WC" in older versions).
    Vector("brocaar-frmpayload", "400403020180010001a694642615d6c3b582", TWOS, ONES,
           UP, "01020304", True, 1, "", 1, b"hello", "d6c3b582"),
    # same table, "Mac-commands in FOpts": LinkCheckReq (02) and LinkADRAns (03 05).
    Vector("brocaar-fopts", "4004030201030000020305016a3798f5b64dc039", ONES, ONES,
           UP, "01020304", False, 0, "020305", 1, b"\x01\x02\x03\x04", "b64dc039"),
    # same table, "Mac-commands in FRMPayload": FPort 0, the same two commands encrypted.
    Vector("brocaar-fport0", "40040302010000000069369eee6aa508", ONES, ONES,
           UP, "01020304", False, 0, "", 0, b"\x02\x03\x05", "ee6aa508"),
    # brocaar/lorawan ExampleNewPHYPayload: a confirmed uplink, keys 01..10 and 10..01.
    Vector("brocaar-confirmed", "80040302010000000ae264d4f7b56a0e75",
           bytes(range(1, 17)), bytes(range(16, 0, -1)),
           CUP, "01020304", False, 0, "", 10, b"\x01\x02\x03\x04", "b56a0e75"),
    # anthonykirby/lora-packet __tests__/decrypt_test.ts "should decrypt large payload":
    # a 44-byte FRMPayload, three keystream blocks.
    Vector("lora-packet-long",
           "40f17dbe490004000155332de41a11adc072553544429ce7787707d1c316e027e7e5e334263376"
           "affb8aa17ad30075293f28dea8a20af3c5e7", LORA_PACKET_NWK, LORA_PACKET_APP,
           UP, "49BE7DF1", False, 4, "", 1, b"The quick brown fox jumps over the lazy dog.",
           "0af3c5e7"),
    # lora-packet __tests__/mic_test.ts: FPort present, FRMPayload empty.
    Vector("lora-packet-empty", "40F17DBE49000300012A3518AF", LORA_PACKET_NWK, LORA_PACKET_APP,
           UP, "49BE7DF1", False, 3, "", 1, b"", "2a3518af"),
]  # fmt: skip


@pytest.mark.parametrize("v", VECTORS, ids=[v.source for v in VECTORS])
def test_published_frames_parse_verify_decrypt_and_re_encode(v: Vector) -> None:
    frame = bytes.fromhex(v.frame)
    up = parse_uplink(frame)
    assert (up.mtype, up.dev_addr_hex, up.adr, up.fcnt16) == (v.mtype, v.dev_addr, v.adr, v.fcnt)
    assert (up.fopts.hex(), up.fport, up.mic.hex()) == (v.fopts, v.fport, v.mic)
    assert verify_mic(v.nwk_skey, up, v.fcnt)
    assert v.fport is not None
    session = Session("vector", "test", up.dev_addr, v.nwk_skey, v.app_skey)
    key = session.key_for(v.fport)
    assert crypt_frm_payload(key, up.dev_addr, v.fcnt, up.frm_payload) == v.plain
    again = build_uplink(up.dev_addr, v.fcnt, v.fport, v.plain, v.nwk_skey, v.app_skey,
                         confirmed=up.confirmed, fopts=up.fopts, adr=up.adr)  # fmt: skip
    assert again == frame


def test_fport0_is_decrypted_with_the_network_key() -> None:
    # brocaar's FPort 0 vector, with an AppSKey that differs from the NwkSKey: only the
    # network key gives back LinkCheckReq + LinkADRAns.
    v = next(v for v in VECTORS if v.source == "brocaar-fport0")
    up = parse_uplink(bytes.fromhex(v.frame))
    session = Session("bin-mac", "waste-bin", up.dev_addr, nwk_skey=ONES, app_skey=TWOS)
    assert session.key_for(0) == ONES and session.key_for(1) == TWOS
    assert crypt_frm_payload(session.key_for(0), up.dev_addr, 0, up.frm_payload) == b"\x02\x03\x05"
    assert crypt_frm_payload(TWOS, up.dev_addr, 0, up.frm_payload) != b"\x02\x03\x05"


def test_fopts_frame_of_lora_packet_issue_18() -> None:
    # lora-packet __tests__/fopts_test.ts ("github issue #18"); no keys published: fields only.
    up = parse_uplink(bytes.fromhex("4084412505A3010009110308B33750F504D4B86A"))
    assert up.dev_addr_hex == "05254184" and up.adr and up.ack and not up.adr_ack_req
    assert up.fcnt16 == 1 and up.fopts == bytes.fromhex("091103")
    assert up.fport == 8 and up.frm_payload.hex() == "b33750f5" and up.mic.hex() == "04d4b86a"


def test_published_bad_mic_is_refused() -> None:
    # lora-packet __tests__/mic_test.ts "should detect incorrect data packet MIC": last byte
    # of the MIC changed from AF to AA.
    up = parse_uplink(bytes.fromhex("40F17DBE49000300012A3518AA"))
    assert not verify_mic(LORA_PACKET_NWK, up, up.fcnt16)
    # and the right frame with the wrong counter high half does not verify either
    good = parse_uplink(bytes.fromhex("40F17DBE49000300012A3518AF"))
    assert verify_mic(LORA_PACKET_NWK, good, 3)
    assert not verify_mic(LORA_PACKET_NWK, good, 0x10003)


JOIN_REQUESTS = [
    # brocaar/lorawan TestPHYPayloadJoinRequest (base64 in the test).
    (base64.b64decode("AAQDAgEEAwIBBQQDAgUEAwItEGqZDhI=").hex(),
     "0102030401020304", "0203040502030405", 4141),
    # brocaar/lorawan ExampleNewPHYPayload_joinRequest.
    ("0001010101010101010202020202020202030309b97b32",
     "0101010101010101", "0202020202020202", 0x0303),
    # lora-packet __tests__/mic_test.ts "should calculate & verify correct join request".
    ("0039363463336913AA05693574323831330489C65B1304",
     "AA13693363343639", "3331383274356905", 0x8904),
]  # fmt: skip


@pytest.mark.parametrize(("frame", "join_eui", "dev_eui", "nonce"), JOIN_REQUESTS)
def test_join_requests_are_classified_and_read(
    frame: str, join_eui: str, dev_eui: str, nonce: int
) -> None:
    raw = bytes.fromhex(frame)
    assert mtype_of(raw) is MType.JOIN_REQUEST
    join = parse_join_request(raw)
    assert (join.join_eui, join.dev_eui, join.dev_nonce) == (join_eui, dev_eui, nonce)
    assert join.mic == raw[-4:]
    with pytest.raises(FrameError) as err:
        parse_uplink(raw)
    assert err.value.reason == "not-uplink" and "join_request" in err.value.detail


def test_a_published_downlink_is_not_an_uplink() -> None:
    # lora-packet __tests__/mic_test.ts: an unconfirmed downlink with ACK set.
    with pytest.raises(FrameError) as err:
        parse_uplink(bytes.fromhex("60f17dbe4920020001f9d65d27"))
    assert err.value.reason == "not-uplink" and "0x60" in err.value.detail


def test_the_published_ack_downlink_is_what_we_send() -> None:
    # Same vector, with its NwkSKey: DevAddr 49BE7DF1, FCtrl ACK, FCnt 2, FPort 1 and
    # no payload, MIC f9d65d27 ("should calculate & verify correct data packet MIC for
    # ACK"). Our ACK of a confirmed uplink is built the same way.
    ack = bytes.fromhex("60f17dbe4920020001f9d65d27")
    nwk = bytes.fromhex("44024241ed4ce9a68c6a8bc055233fd3")
    assert build_downlink(0x49BE7DF1, 2, nwk, bytes(16), ack=True, fport=1) == ack
    down = parse_downlink(ack)
    assert (down.dev_addr, down.ack, down.fcnt16, down.fport) == (0x49BE7DF1, True, 2, 1)
    assert verify_mic(nwk, down, 2) and not verify_mic(nwk, down, 3)


@pytest.mark.parametrize(
    ("frame", "reason", "where"),
    [
        (bytes.fromhex("4004030201000000006936"), "too-short", "11 bytes"),
        (bytes([0x43]) + bytes(15), "bad-major", "major version 3"),
        (bytes([0xE0]) + bytes(15), "not-uplink", "proprietary"),
        (bytes.fromhex("400403020105000002030501b64dc039"), "truncated", "FOptsLen 5"),
        (bytes.fromhex("40040302010100000200aabbccdd"), "fopts-with-port0", "FPort 0"),
        (bytes(23), "not-uplink", "join_request"),
    ],
)
def test_malformed_frames_say_what_and_where(frame: bytes, reason: str, where: str) -> None:
    with pytest.raises(FrameError) as err:
        parse_uplink(frame)
    assert err.value.reason == reason and where in err.value.detail
    assert str(err.value).startswith(reason)


def test_join_request_of_the_wrong_length_is_a_frame_error() -> None:
    with pytest.raises(FrameError) as err:
        parse_join_request(bytes.fromhex(JOIN_REQUESTS[0][0])[:-1])
    assert err.value.reason == "not-join-request" and "22 bytes" in err.value.detail


def test_counter_roll_over_needs_the_full_32_bits_in_the_mic() -> None:
    nwk, app = bytes(range(16)), bytes(range(16, 32))
    frame = build_uplink(0x26011BDA, 0x1_0002, 3, b"\x2a", nwk, app)
    up = parse_uplink(frame)
    assert up.fcnt16 == 0x0002  # only the low half travels
    fcnt32 = full_fcnt(up.fcnt16, last32=0xFFFE)
    assert fcnt32 == 0x1_0002
    assert verify_mic(nwk, up, fcnt32) and not verify_mic(nwk, up, up.fcnt16)
    assert crypt_frm_payload(app, up.dev_addr, fcnt32, up.frm_payload) == b"\x2a"
    assert crypt_frm_payload(app, up.dev_addr, up.fcnt16, up.frm_payload) != b"\x2a"


@pytest.mark.parametrize(
    ("fcnt16", "last", "expected"),
    [
        (0xFFFF, 0xFFFE, 0xFFFF),
        (0x0000, 0xFFFF, 0x1_0000),
        (0x3FFF, 0xFFFF, 0x1_3FFF),  # MAX_FCNT_GAP frames lost across the roll-over
        (0x1000, 0x1_2000, 0x1_1000),  # below the last one, not far enough to roll: a replay
        (0x0001, 0xFFFF_FFFE, 0x0000_0001),  # 32-bit counter spent: comes back below (replay)
    ],
)
def test_full_fcnt_edges(fcnt16: int, last: int, expected: int) -> None:
    assert full_fcnt(fcnt16, last) == expected


frames_in = st.builds(
    lambda dev_addr, fcnt32, fport, payload, fopts, confirmed, adr: (
        dev_addr, fcnt32, fport, payload, fopts, confirmed, adr),
    st.integers(0, 0xFFFF_FFFF), st.integers(0, 0xFFFF_FFFF),
    st.one_of(st.none(), st.integers(1, 223)), st.binary(max_size=222),
    st.binary(max_size=15), st.booleans(), st.booleans(),
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(frames_in)
def test_round_trip_build_parse_verify_decrypt(
    case: tuple[int, int, int | None, bytes, bytes, bool, bool],
) -> None:
    dev_addr, fcnt32, fport, payload, fopts, confirmed, adr = case
    if fport is None:
        payload = b""
    nwk, app = bytes(range(16)), bytes(range(16, 32))
    frame = build_uplink(dev_addr, fcnt32, fport, payload, nwk, app,
                         confirmed=confirmed, fopts=fopts, adr=adr)  # fmt: skip
    if len(frame) > 255:
        with pytest.raises(FrameError) as err:
            parse_uplink(frame)
        assert err.value.reason == "too-long"
        return
    up = parse_uplink(frame)
    assert (up.dev_addr, up.fcnt16, up.fport, up.fopts) == (dev_addr, fcnt32 & 0xFFFF, fport, fopts)
    assert (up.confirmed, up.adr) == (confirmed, adr)
    assert verify_mic(nwk, up, fcnt32)
    assert crypt_frm_payload(app, dev_addr, fcnt32, up.frm_payload) == payload


SEEDS = [bytes.fromhex(v.frame) for v in VECTORS]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A published frame with bytes changed, cut off or appended: reaches the deep branches."""
    frame = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 4))):
        frame[draw(st.integers(0, len(frame) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(frame)))
    return bytes(frame[:cut]) + draw(st.binary(max_size=8))


@settings(max_examples=10_000, deadline=None)
@given(mutated())
def test_fuzz_mutated_frames_raise_only_frame_error(data: bytes) -> None:
    try:
        up = parse_uplink(data)
    except FrameError as exc:
        assert exc.reason and exc.detail
        return
    assert len(up.raw) == len(data) and len(up.mic) == 4
    assert 8 + len(up.fopts) + (up.fport is not None) + len(up.frm_payload) + 4 == len(data)
    verify_mic(ONES, up, up.fcnt16)  # must not raise on any parsed frame
