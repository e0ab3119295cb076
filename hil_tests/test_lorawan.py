"""LoRaWAN end to end: simulated packet forwarders send real GWMP datagrams with frames
encrypted under test keys, over loopback UDP, to the real agent; readings arrive
verified at the command post.

Against a real concentrator, point its packet forwarder (`serv_port_up`) at a running
agent and use `cityedge check --only lorawan`: this suite needs its own keys, so it
always runs against the simulators.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from cityedge.drivers.lorawan.frames import (
    build_join_request,
    build_uplink,
    parse_downlink,
    verify_mic,
)
from cityedge.drivers.lorawan.keyring import OtaaDevice, Session
from cityedge.street.lorawan_reports import bin_report
from tests.lorawan.site import LoRaSite, lorawan_site

pytestmark = pytest.mark.timeout(180)

BIN = Session("bin-0042", "waste-bin", 0x26011BDA,
              bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C"),
              bytes.fromhex("000102030405060708090A0B0C0D0E0F"))  # fmt: skip
AIR = Session("air-0007", "environment-station", 0x26011C01, bytes(range(16)),
              bytes(range(16, 32)))  # fmt: skip
PARK = Session("park-0311", "parking-sensor", 0x26011D11, bytes(range(32, 48)),
               bytes(range(48, 64)))  # fmt: skip


def points_of(site: LoRaSite, device: str, point: str) -> list[object]:
    return [r.reading.value for r in site.post.readings
            if r.reading.device == device and r.reading.point == point]  # fmt: skip


async def test_sensors_through_two_forwarders_arrive_verified_once(tmp_path: Path) -> None:
    async with lorawan_site(tmp_path, [BIN, AIR, PARK]) as site:
        async with site.forwarder(0) as a, site.forwarder(1) as b:
            assert await a.keepalive() and await b.keepalive()
            for session in (BIN, AIR, PARK):
                frame = site.frame(session)
                assert await a.uplink(frame, rssi=-112, lsnr=-4)
                assert await b.uplink(frame, rssi=-88, lsnr=8)  # the same frame, better heard
            assert await site.wait_delivered(3), site.agent.logs()[-3000:]
            await asyncio.sleep(1.0)  # any duplicate would have arrived by now
        assert site.delivered() == 3
        assert points_of(site, "bin-0042", "rssi") == [-88.0]
        assert points_of(site, "air-0007", "noise_laeq") and points_of(
            site, "park-0311", "occupied"
        )
        assert not site.post.rejected
        health = await asyncio.to_thread(site.devices)
        assert health["bin-0042"]["state"] == "up"


async def test_replay_bad_mic_and_garbage_are_counted_and_survived(tmp_path: Path) -> None:
    async with lorawan_site(tmp_path, [BIN]) as site:
        async with site.forwarder(0) as fwd:
            first = site.frame(BIN)
            assert await fwd.uplink(first)
            assert await site.wait_delivered(1)
            forged = bytearray(site.frame(BIN))
            forged[-1] ^= 0x01
            assert await fwd.uplink(bytes(forged))
            fwd.raw(b"\x02\x00\x01")  # truncated
            fwd.raw(b"\x02\x00\x07\x00" + bytes(8) + b"[1,2")  # garbage JSON
            fwd.raw(bytes(range(256)) * 4)  # noise
            assert await fwd.uplink(b"\x40\x01\x02")  # a radio frame too short to be LoRaWAN
            assert await fwd.uplink(first)  # a replay
            assert await fwd.uplink(site.frame(BIN, fcnt=2))
            assert await site.wait_delivered(2)
            errors = (await asyncio.to_thread(site.devices))["bin-0042"]["errors"]
            assert errors.get("replay") == 1 and errors.get("bad-mic") == 1
        # the replay is refused after a restart too
        await asyncio.to_thread(site.restart)
        async with site.forwarder(0) as fwd:
            assert await fwd.uplink(first)
            assert await fwd.uplink(site.frame(BIN, fcnt=3))
            assert await site.wait_delivered(3)
            await asyncio.sleep(1.0)
            errors = (await asyncio.to_thread(site.devices))["bin-0042"]["errors"]
        assert site.delivered() == 3
        assert errors.get("replay") == 1
        assert site.agent.running()


BIN_OTAA = OtaaDevice("bin-0099", "waste-bin", "70B3D57ED0000099", "70B3D57ED0000000",
                      bytes.fromhex("B6B53F4A168A7A88BDF7EA135CE9CFCA"))  # fmt: skip


async def test_an_otaa_sensor_joins_through_the_gateway_and_keeps_its_session(
    tmp_path: Path,
) -> None:
    async with lorawan_site(tmp_path, [BIN], [BIN_OTAA]) as site:
        async with site.forwarder(0) as near, site.forwarder(1) as far:
            # the forwarders pull first: a join accept can only go where a PULL_DATA came from
            assert await near.keepalive() and await far.keepalive()
            session = await near.join(BIN_OTAA, dev_nonce=0x1001)
            assert session.dev_addr >> 25 == 0x13  # inside the network's NwkID
            # RX1 of the request: same channel and data rate, 5 s later by the
            # concentrator's clock, inverted polarity, through the forwarder that heard it
            txpk = near.last_txpk
            assert txpk["tmst"] == (near.last_tmst + 5_000_000) & 0xFFFFFFFF
            assert (txpk["freq"], txpk["datr"], txpk["ipol"], txpk["imme"]) == (
                868.1,
                "SF9BW125",
                True,
                False,
            )
            assert await near.uplink(site.frame(session))
            assert await site.wait_delivered(1), site.agent.logs()[-3000:]
            assert points_of(site, "bin-0099", "fill")
            joined = [e for e in site.post.events if e.kind == "lorawan.joined"]
            assert joined and joined[0].data["accept_sent"] is True
            # a recorded join request replayed: refused, the session stays
            replay = build_join_request(BIN_OTAA.join_eui, BIN_OTAA.dev_eui, 0x1001,
                                        BIN_OTAA.app_key)  # fmt: skip
            assert await far.uplink(replay)
            with pytest.raises(TimeoutError):
                await far.downlink(timeout=1.5)
            forged = bytearray(build_join_request(BIN_OTAA.join_eui, BIN_OTAA.dev_eui, 0x1002,
                                                  BIN_OTAA.app_key))  # fmt: skip
            forged[-1] ^= 0xFF
            assert await far.uplink(bytes(forged))
            assert await near.uplink(site.frame(session))
            assert await site.wait_delivered(2)
            errors = (await asyncio.to_thread(site.devices))["bin-0099"]["errors"]
            assert errors.get("join-replay") == 1 and errors.get("bad-mic") == 1
        # the session (and its frame counter) survives a restart: no new join needed
        await asyncio.to_thread(site.restart)
        async with site.forwarder(0) as near:
            assert await near.keepalive()
            assert await near.uplink(site.frame(session, fcnt=1))  # a replay now
            assert await near.uplink(site.frame(session))
            assert await site.wait_delivered(3)
            # a later join opens a new session on a new address; the old one is gone
            renewed = await near.join(BIN_OTAA, dev_nonce=0x1003)
            assert renewed.dev_addr != session.dev_addr
            assert await near.uplink(site.frame(renewed))
            assert await site.wait_delivered(4)
            assert await near.uplink(site.frame(session))  # the old session's keys
            await asyncio.sleep(1.0)
            counters = (await asyncio.to_thread(site.devices))["bin-0099"]["errors"]
        assert site.delivered() == 4
        assert counters.get("replay") == 1
        assert site.agent.running()


async def test_a_confirmed_uplink_gets_its_ack_in_rx1(tmp_path: Path) -> None:
    async with lorawan_site(tmp_path, [BIN]) as site:
        async with site.forwarder(0) as near:
            assert await near.keepalive()
            fcnt = 41
            confirmed = build_uplink(BIN.dev_addr, fcnt, 1, bin_report(600, 21.0),
                                     BIN.nwk_skey, BIN.app_skey, confirmed=True)  # fmt: skip
            assert await near.uplink(confirmed)
            txpk = await near.downlink(timeout=10)
            assert txpk["tmst"] == (near.last_tmst + 1_000_000) & 0xFFFFFFFF  # RX1, 1 s
            assert (txpk["freq"], txpk["datr"], txpk["ipol"]) == (868.1, "SF9BW125", True)
            ack = parse_downlink(base64.b64decode(txpk["data"]))
            assert ack.ack and ack.dev_addr == BIN.dev_addr and ack.fcnt16 == 0
            assert verify_mic(BIN.nwk_skey, ack, 0)  # the bin trusts it
            # the ACK was "lost": the bin repeats the frame; a new ACK, no second reading
            assert await near.uplink(confirmed)
            again = parse_downlink(base64.b64decode((await near.downlink(timeout=10))["data"]))
            assert again.ack and again.fcnt16 == 1
            assert await site.wait_delivered(1)
            await asyncio.sleep(1.0)
        assert site.delivered() == 1
        assert points_of(site, "bin-0042", "distance") == [600]
