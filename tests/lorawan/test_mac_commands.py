"""LoRaWAN MAC commands (issue 19): parsed from FOpts and from FPort 0 (decrypted with
the NwkSKey); LinkCheckReq and DeviceTimeReq answered in RX1 through the forwarder
that heard the frame, over real UDP, in a downlink the device can verify."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityedge.drivers.lorawan.frames import build_uplink, parse_downlink, verify_mic
from cityedge.drivers.lorawan.maccommands import (
    UPLINK_COMMANDS,
    device_time_ans,
    gps_to_unix,
    link_check_ans,
    parse_mac_commands,
)
from cityedge.street.lorawan import PacketForwarder
from cityedge.street.lorawan_reports import bin_report
from tests.lorawan.test_driver import ADDR, APP, EUI_A, EUI_B, NWK, make_driver, running

pytestmark = pytest.mark.timeout(60)


def test_the_published_fopts_parse() -> None:
    # brocaar/lorawan's "MAC commands in FOpts" (docs/lorawan.md): LinkCheckReq, LinkADRAns 05
    parsed = parse_mac_commands(bytes.fromhex("020305"))
    assert [(c.name, c.payload) for c in parsed.commands] == [
        ("link-check-req", b""),
        ("link-adr-ans", b"\x05"),
    ]
    assert parsed.unknown is None and parsed.truncated is None


def test_an_unknown_id_or_a_cut_payload_stops_parsing_and_says_so() -> None:
    unknown = parse_mac_commands(bytes.fromhex("02800d"))
    assert [c.name for c in unknown.commands] == ["link-check-req"] and unknown.unknown == 0x80
    cut = parse_mac_commands(bytes.fromhex("0d06ff"))  # DevStatusAns needs 2 bytes
    assert [c.name for c in cut.commands] == ["device-time-req"]
    assert cut.truncated == "dev-status-ans"


@given(st.binary(max_size=255))
def test_fuzz_any_bytes_parse_to_whole_commands(data: bytes) -> None:
    parsed = parse_mac_commands(data)
    used = sum(1 + len(c.payload) for c in parsed.commands)
    assert data[:used] == b"".join(bytes([c.cid]) + c.payload for c in parsed.commands)
    for command in parsed.commands:
        assert len(command.payload) == UPLINK_COMMANDS[command.cid][1]
    if parsed.unknown is None and parsed.truncated is None:
        assert used == len(data)


def test_link_check_margin_is_snr_above_the_demodulation_floor() -> None:
    assert link_check_ans(7.5, 9, 2) == bytes([0x02, 20, 2])  # 7.5 - (-12.5)
    assert link_check_ans(-30.0, 12, 1) == bytes([0x02, 0, 1])  # below the floor: 0
    assert link_check_ans(10.0, 7, 0) == bytes([0x02, 17, 1])  # it was heard: at least 1


def test_device_time_is_gps_seconds_and_256ths() -> None:
    # 2023-11-14T22:13:20Z = unix 1_700_000_000: GPS adds 18 leap seconds to 1980-01-06
    assert device_time_ans(1_700_000_000.5) == bytes([0x0D]) + (1_384_035_218).to_bytes(
        4, "little"
    ) + bytes([128])
    assert gps_to_unix(1_384_035_218, 128) == 1_700_000_000.5


@pytest.mark.parametrize("where", ["fopts", "fport0"])
async def test_link_check_and_device_time_are_answered_in_rx1(tmp_path: Path, where: str) -> None:
    driver = make_driver(tmp_path, dedup_window=0.05)
    async with running(driver) as got:
        assert driver.port is not None
        async with (
            PacketForwarder(EUI_A, driver.port) as a,
            PacketForwarder(EUI_B, driver.port) as b,
        ):
            assert await a.keepalive() and await b.keepalive()  # both may be asked to send
            commands = bytes([0x02, 0x0D])
            if where == "fopts":
                frame = build_uplink(ADDR, 1, 1, bin_report(660, 21.0), NWK, APP, fopts=commands)
            else:
                frame = build_uplink(ADDR, 1, 0, commands, NWK, APP)
            before = time.time()
            assert await a.uplink(frame, rssi=-110, lsnr=-3, sf=9)
            assert await b.uplink(frame, rssi=-90, lsnr=6.5, sf=9)  # the better copy
            txpk = await b.downlink(timeout=10)
            after = time.time()
            assert await got.wait("rssi", 1)
    down = parse_downlink(base64.b64decode(txpk["data"]))
    assert down.dev_addr == ADDR and not down.ack and down.fport is None
    assert verify_mic(NWK, down, 0)  # the network's first downlink of this session
    assert down.fopts[:3] == bytes([0x02, int(6.5 + 12.5), 2])  # margin 19 dB, 2 gateways
    assert down.fopts[3] == 0x0D and len(down.fopts) == 9
    sent = gps_to_unix(int.from_bytes(down.fopts[4:8], "little"), down.fopts[8])
    assert before - 1 <= sent <= after + 1  # the time the frame was decoded, in GPS time
    assert txpk["datr"] == "SF9BW125" and txpk["ipol"] is True
    counts = driver.counters()
    assert counts["mac.link-check-req"] == 1 and counts["mac.device-time-req"] == 1
    assert counts["mac-answers"] == 1 and counts["acks-sent"] == 0


async def test_answers_ride_with_the_ack_of_a_confirmed_uplink(tmp_path: Path) -> None:
    driver = make_driver(tmp_path, dedup_window=0.05)
    async with running(driver):
        assert driver.port is not None
        async with PacketForwarder(EUI_A, driver.port) as fwd:
            assert await fwd.keepalive()
            frame = build_uplink(ADDR, 5, 1, bin_report(600, 20.0), NWK, APP, confirmed=True,
                                 fopts=bytes([0x02, 0x06, 0xFE, 0x05]))  # fmt: skip
            assert await fwd.uplink(frame, lsnr=0.0, sf=12)
            down = parse_downlink(base64.b64decode((await fwd.downlink(timeout=10))["data"]))
    assert down.ack and down.fopts == bytes([0x02, 20, 1])
    counts = driver.counters()
    assert counts["mac.dev-status-ans"] == 1 and counts["acks-sent"] == 1


async def test_an_unknown_command_is_counted_and_the_frame_still_decoded(tmp_path: Path) -> None:
    driver = make_driver(tmp_path, dedup_window=0.05)
    async with running(driver) as got:
        assert driver.port is not None
        async with PacketForwarder(EUI_A, driver.port) as fwd:
            frame = build_uplink(ADDR, 1, 1, bin_report(660, 21.0), NWK, APP, fopts=b"\x7f\x02")
            assert await fwd.uplink(frame)
            assert await got.wait("fill", 1)
    assert driver.counters()["mac-command"] == 1
