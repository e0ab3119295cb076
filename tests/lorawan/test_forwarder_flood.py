"""A flood of GWMP datagrams from made-up gateway EUIs (issue 19: 100,000 of them took
the agent from 42 to 163 MB and made 55,569 `forwarder-<EUI>` devices): over real
loopback UDP, 20,000 datagrams from 20,000 distinct EUIs, each a PUSH_DATA with a
status report and a frame. The driver remembers no more forwarders than listed (or
`max_forwarders` without a list), invents no device, counts every refusal, logs a
handful of lines, and keeps answering the forwarders it knows."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from cityedge.drivers.lorawan.checks import allowlists
from cityedge.drivers.lorawan.config import Section
from cityedge.drivers.lorawan.driver import LoRaWANDriver
from cityedge.drivers.lorawan.semtech import push_data, rxpk_json
from cityedge.sdk.checks import Status
from cityedge.sdk.model import Reading
from cityedge.street.lorawan import PacketForwarder
from tests.lorawan.test_driver import EUI_A, EUI_B, bin_frame, make_driver, running

pytestmark = pytest.mark.timeout(120)

FLOOD = 20_000
BATCH = 50  # datagrams sent before waiting for the listener to count them (no kernel drops)


def stranger(n: int) -> str:
    return f"DE{n:014X}"


async def flood(driver: LoRaWANDriver, count: int = FLOOD) -> None:
    """`count` PUSH_DATA from as many EUIs, each with a status report and a frame."""
    assert driver.port is not None and driver.listener is not None
    listener = driver.listener
    frame = [rxpk_json(bin_frame(1), rssi=-90, lsnr=5)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        start = listener.stats.datagrams
        for n in range(count):
            sock.sendto(push_data(n & 0xFFFF, stranger(n), frame, {"rxnb": n}),
                        ("127.0.0.1", driver.port))  # fmt: skip
            if (n + 1) % BATCH == 0 or n + 1 == count:
                async with asyncio.timeout(20):
                    # the listener has no hook to wait on; polling it is bounded
                    while listener.stats.datagrams - start < n + 1:  # noqa: ASYNC110
                        await asyncio.sleep(0.001)


def tracked(driver: LoRaWANDriver) -> set[str]:
    """Every place a forwarder could be remembered: listener, health, status, readings."""
    assert driver.listener is not None
    names = set(driver.listener.forwarders)
    names |= {h.device.removeprefix("forwarder-") for h in driver.health()
              if h.device.startswith("forwarder-")}  # fmt: skip
    names |= {f["eui"] for f in driver.status()["forwarders"]}
    names |= {d.removeprefix("forwarder-") for d in driver.latest if d.startswith("forwarder-")}
    names |= {r.device.removeprefix("forwarder-") for r in driver._forwarder_readings
              if isinstance(r, Reading)}  # fmt: skip
    return names


async def test_listed_forwarders_only_a_flood_of_strangers_is_counted_not_kept(
    tmp_path: Path,
) -> None:
    driver = make_driver(tmp_path, dedup_window=0.05, forwarders=[EUI_A])
    with capture_logs() as logs:
        async with running(driver) as got:
            assert driver.port is not None
            async with PacketForwarder(EUI_A, driver.port) as fwd:
                assert await fwd.uplink(bin_frame(1))
                await flood(driver)
                # the listed forwarder is still answered, its frames still decoded
                assert await fwd.keepalive()
                assert await fwd.uplink(bin_frame(2))
                assert await got.wait("fill", 2)
    assert tracked(driver) == {EUI_A}
    assert {h.device for h in driver.health()} == {"bin-0042", f"forwarder-{EUI_A}"}
    counts = driver.counters()
    assert counts["datagram.unknown-forwarder"] == FLOOD
    assert counts.get("bad-mic", 0) == 0 and counts.get("replay", 0) == 0  # never decoded
    dropped = [e for e in logs if e["event"] == "lorawan.datagram.dropped"]
    assert len(dropped) == 1 and dropped[0]["reason"] == "unknown-forwarder"
    assert len(logs) < 20, [e["event"] for e in logs]


async def test_without_a_list_the_first_few_are_kept_and_every_other_refused(
    tmp_path: Path,
) -> None:
    driver = make_driver(tmp_path, dedup_window=0.05, max_forwarders=3)
    with capture_logs() as logs:
        async with running(driver) as got:
            assert driver.port is not None
            async with (
                PacketForwarder(EUI_A, driver.port) as a,
                PacketForwarder(EUI_B, driver.port) as b,
            ):
                assert await a.keepalive() and await b.keepalive()
                await flood(driver)
                assert await a.uplink(bin_frame(1)) and await b.uplink(bin_frame(2))
                assert await got.wait("fill", 2)
                # a forwarder first heard after the places were taken is refused
                late = PacketForwarder("AA555A0000000199", driver.port, ack_timeout=0.2)
                async with late:
                    assert not await late.keepalive()
    kept = tracked(driver)
    assert kept == {EUI_A, EUI_B, stranger(0)}  # the two forwarders, the first stranger
    counts = driver.counters()
    assert counts["datagram.too-many-forwarders"] == FLOOD - 1 + late.sent
    readings = {r.device for r in got.items
                if isinstance(r, Reading) and r.device.startswith("forwarder-")}  # fmt: skip
    assert readings <= {f"forwarder-{e}" for e in kept}
    dropped = [e for e in logs if e["event"] == "lorawan.datagram.dropped"]
    assert [e["reason"] for e in dropped] == ["too-many-forwarders"]
    heard = [e for e in logs if e["event"] == "lorawan.forwarder.heard"]
    assert len(heard) == 3


def test_check_warns_about_a_table_without_a_list(tmp_path: Path) -> None:
    keys = tmp_path / "k.toml"
    listed = Section.parse({"name": "a", "sessions": str(keys), "forwarders": [EUI_A]})
    open_to_all = Section.parse({"name": "b", "sessions": str(keys)})
    [warning] = allowlists([listed, open_to_all])
    assert warning.status is Status.WARN and warning.name == "lorawan.b.forwarders"
    assert "first 8 gateway EUIs" in warning.detail and "gateway_ID" in warning.remedy


async def test_a_flood_of_forged_frames_is_counted_and_logged_once(tmp_path: Path) -> None:
    driver = make_driver(tmp_path, dedup_window=0.05, forwarders=[EUI_A])
    forged = []
    for fcnt in range(1, 301):
        frame = bytearray(bin_frame(fcnt))
        frame[-1] ^= 0xFF  # the MIC no longer verifies
        forged.append(bytes(frame))
    with capture_logs() as logs:
        async with running(driver) as got:
            assert driver.port is not None
            async with PacketForwarder(EUI_A, driver.port) as fwd:
                for at in range(0, len(forged), 100):  # 100 frames per datagram
                    assert await fwd.uplink(*forged[at : at + 100])
                assert await fwd.uplink(bin_frame(301))
                assert await got.wait("fill", 1)
            async with asyncio.timeout(20):
                while driver.counters().get("bad-mic", 0) < 300:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
    refused = [e for e in logs if e["event"] == "lorawan.frame.refused"]
    assert len(refused) == 1 and refused[0]["reason"] == "bad-mic"
    assert driver.counters()["bad-mic"] == 300
