"""OTAA: the join primitives against published vectors, and the join server against a
real SQLite file (sessions, DevNonce replay, addresses, restarts)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.drivers.lorawan.fcnt import FrameCounters
from cityedge.drivers.lorawan.frames import (
    FrameError,
    JoinAccept,
    build_join_accept,
    build_join_request,
    derive_session_keys,
    open_join_accept,
    parse_join_request,
    verify_join_request,
)
from cityedge.drivers.lorawan.joins import JoinRefused, JoinServer
from cityedge.drivers.lorawan.keyring import Keyring, OtaaDevice, SessionFileError, load_keyring
from cityedge.drivers.lorawan.uplinks import Radio, UplinkDecoder

# Published with lora-packet issue #10 (anthonykirby/lora-packet) and the "Deciphering a
# LoRaWAN OTAA join accept" walkthrough it refers to: a join request, the accept a live
# EU868 network answered with, the AppKey, and the session keys derived from them.
APP_KEY = bytes.fromhex("B6B53F4A168A7A88BDF7EA135CE9CFCA")
JOIN_REQUEST = bytes.fromhex("00DC0000D07ED5B3701E6FEDF57CEEAF0085CC587FE913")
JOIN_ACCEPT = bytes.fromhex("204DD85AE608B87FC4889970B7D2042C9E72959B0057AED6094B16003DF12DE145")
ACCEPTED = JoinAccept(
    app_nonce=0xE5063A, net_id=0x000013, dev_addr=0x26012E43, dl_settings=0x03, rx_delay=0x01,
    cflist=bytes.fromhex("184F84E85684B85E84886684586E8400"),
)  # fmt: skip
NWK_SKEY = bytes.fromhex("2C96F7028184BB0BE8AA49275290D4FC")
APP_SKEY = bytes.fromhex("F3A5C8F0232A38C144029C165865802C")

DEVICE = OtaaDevice("bin-0099", "waste-bin", "00AFEE7CF5ED6F1E", "70B3D57ED00000DC", APP_KEY)


def test_the_published_join_request_parses_and_verifies() -> None:
    request = parse_join_request(JOIN_REQUEST)
    assert (request.join_eui, request.dev_eui, request.dev_nonce) == (
        "70B3D57ED00000DC", "00AFEE7CF5ED6F1E", 0xCC85,
    )  # fmt: skip
    assert request.mic == bytes.fromhex("587FE913")
    assert verify_join_request(APP_KEY, request)
    assert not verify_join_request(bytes(16), request)
    assert build_join_request("70B3D57ED00000DC", "00AFEE7CF5ED6F1E", 0xCC85, APP_KEY) == (
        JOIN_REQUEST
    )


def test_the_published_join_accept_both_ways_and_its_session_keys() -> None:
    assert open_join_accept(APP_KEY, JOIN_ACCEPT) == ACCEPTED
    assert build_join_accept(APP_KEY, ACCEPTED) == JOIN_ACCEPT  # the network's side
    assert derive_session_keys(APP_KEY, 0xE5063A, 0x13, 0xCC85) == (NWK_SKEY, APP_SKEY)
    with pytest.raises(FrameError, match="bad-mic"):
        open_join_accept(bytes(16), JOIN_ACCEPT)
    short = build_join_accept(APP_KEY, JoinAccept(1, 2, 0x26000001))
    assert len(short) == 17 and open_join_accept(APP_KEY, short).dev_addr == 0x26000001


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (JOIN_REQUEST[:-1], "not-join-request"),
        (b"\x40" + JOIN_REQUEST[1:], "not-join-request"),  # a data uplink's MHDR
        (b"\x01" + JOIN_REQUEST[1:], "bad-major"),
    ],
)
def test_malformed_join_requests_are_named(frame: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as err:
        parse_join_request(frame)
    assert err.value.reason == reason


def server(tmp_path: Path, **kw: object) -> JoinServer:
    return JoinServer(tmp_path / "joins.db", {DEVICE.dev_eui: DEVICE}, net_id=0x13, **kw)  # type: ignore[arg-type]


def request(nonce: int, device: OtaaDevice = DEVICE) -> bytes:
    return build_join_request(device.join_eui, device.dev_eui, nonce, device.app_key)


def test_a_join_opens_a_session_the_device_can_derive(tmp_path: Path) -> None:
    joins = server(tmp_path, reserved=lambda: {0x26012E43})
    joined = joins.join(request(0x0001))
    accept = open_join_accept(APP_KEY, joined.accept)  # what the device reads
    assert accept.dev_addr == joined.session.dev_addr and accept.dev_addr >> 25 == 0x13
    assert derive_session_keys(APP_KEY, accept.app_nonce, 0x13, 0x0001) == (
        joined.session.nwk_skey, joined.session.app_skey,
    )  # fmt: skip
    assert joined.previous is None and joined.session.name == "bin-0099"
    assert stat.S_IMODE((tmp_path / "joins.db").stat().st_mode) == 0o600  # keys inside


def test_a_used_dev_nonce_is_refused_even_after_a_restart(tmp_path: Path) -> None:
    joins = server(tmp_path)
    first = joins.join(request(7))
    with pytest.raises(JoinRefused) as err:
        joins.join(request(7))
    assert err.value.reason == "join-replay" and err.value.device == "bin-0099"
    joins.close()
    joins = server(tmp_path)
    with pytest.raises(JoinRefused, match="join-replay"):
        joins.join(request(7))
    assert joins.sessions() == [first.session]  # the session survived too
    again = joins.join(request(8))
    assert again.previous == first.session.dev_addr
    assert open_join_accept(APP_KEY, again.accept).app_nonce == 1  # increasing per device
    assert joins.sessions() == [again.session]


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (request(1, OtaaDevice("x", "waste-bin", "0000000000000001", DEVICE.join_eui, APP_KEY)),
         "unknown-device"),
        (request(1, OtaaDevice("x", "waste-bin", DEVICE.dev_eui, "0000000000000001", APP_KEY)),
         "unknown-device"),  # the right DevEUI under another JoinEUI
        (request(1, OtaaDevice("x", "waste-bin", DEVICE.dev_eui, DEVICE.join_eui, bytes(16))),
         "bad-mic"),
    ],
)  # fmt: skip
def test_joins_we_cannot_vouch_for_are_refused(tmp_path: Path, frame: bytes, reason: str) -> None:
    joins = server(tmp_path)
    with pytest.raises(JoinRefused) as err:
        joins.join(frame)
    assert err.value.reason == reason
    assert joins.sessions() == []
    assert joins.join(request(1)).session.name == "bin-0099"  # the nonce was not burnt


def test_the_decoder_moves_a_device_to_its_new_address(tmp_path: Path) -> None:
    counters = FrameCounters(tmp_path / "fcnt.db")
    from cityedge.drivers.lorawan.decoders import SHIPPED_DEVICE_TYPES, load_device_types

    types = load_device_types([SHIPPED_DEVICE_TYPES])
    sent: list[bytes] = []
    decoder = UplinkDecoder("lora", Keyring([], [DEVICE]), counters, types, joins=server(tmp_path))
    decoder.downlink = lambda _radio, accept, _delay: sent.append(accept) is None  # type: ignore[func-returns-value]
    assert "bin-0099" in decoder.catalogue()
    assert [h.detail for h in decoder.health()] == ["waiting for its first join"]
    radio = Radio(-90.0, 5.0, 9, 868.1, ("AA",), via="AA", tmst=1000)
    events = decoder.decode(request(3), radio)
    assert [e.kind for e in events] == ["lorawan.joined"]  # type: ignore[union-attr]
    assert len(sent) == 1 and decoder.joined == 1
    assert [h.detail for h in decoder.health()] == [""]
    decoder.downlink = lambda _radio, _accept, _delay: False  # no forwarder has pulled
    events = decoder.decode(request(4), radio)
    assert events[0].data["accept_sent"] is False  # type: ignore[union-attr]
    assert decoder.refused["no-downlink"] == 1
    assert len(decoder.health()) == 1  # one device, whatever its address


def test_a_keyring_holds_abp_and_otaa_devices_and_names_mixed_entries(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(
        '[[device]]\nname = "a"\ntype = "waste-bin"\ndev_addr = "26011BDA"\n'
        f'nwk_skey = "{"00" * 16}"\napp_skey = "{"11" * 16}"\n'
        '[[device]]\nname = "b"\ntype = "waste-bin"\ndev_eui = "70b3d57ed0000099"\n'
        f'join_eui = "70B3D57ED0000000"\napp_key = "{"22" * 16}"\n'
    )
    path.chmod(0o600)
    ring = load_keyring(path)
    assert list(ring) == [0x26011BDA] and list(ring.otaa) == ["70B3D57ED0000099"]
    assert "2222" not in repr(ring.otaa["70B3D57ED0000099"])  # keys never shown
    path.write_text(
        '[[device]]\nname = "b"\ntype = "waste-bin"\ndev_eui = "70B3D57ED0000099"\n'
        f'join_eui = "70B3D57ED0000000"\napp_key = "{"22" * 16}"\ndev_addr = "26011BDA"\n'
    )
    with pytest.raises(SessionFileError, match=r"device\[0\]: unknown key\(s\) dev_addr .*OTAA"):
        load_keyring(path)
    path.write_text(
        '[[device]]\nname = "b"\ntype = "waste-bin"\ndev_eui = "70B3"\n'
        f'join_eui = "70B3D57ED0000000"\napp_key = "{"22" * 16}"\n'
    )
    with pytest.raises(SessionFileError, match=r"device\[0\]\.dev_eui: expected 16 hex digits"):
        load_keyring(path)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> JoinServer:
    return JoinServer(tmp_path_factory.mktemp("fuzz") / "joins.db", {DEVICE.dev_eui: DEVICE})


@settings(max_examples=3000, deadline=None)
@given(frame=st.binary(max_size=40) | st.binary(min_size=23, max_size=23).map(
    lambda b: b"\x00" + b[1:]  # join-request MHDR: get past the type check
))  # fmt: skip
def test_fuzz_the_join_server_only_says_no_with_a_reason(
    fuzz_server: JoinServer, frame: bytes
) -> None:
    try:
        fuzz_server.join(frame)
    except (FrameError, JoinRefused) as exc:
        assert exc.reason
    else:
        raise AssertionError(f"a random frame joined: {frame.hex()}")
