"""The LoRaWAN driver on real UDP sockets, fed by simulated packet forwarders."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from cityedge.drivers.lorawan import Section, build
from cityedge.drivers.lorawan.driver import LoRaWANDriver, SetupError
from cityedge.drivers.lorawan.frames import build_uplink
from cityedge.sdk.driver import DriverEnv
from cityedge.sdk.model import DeviceUnreachable, Event, PointNotWritable, Reading
from cityedge.street.lorawan import PacketForwarder
from cityedge.street.lorawan_reports import bin_report

NWK = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")
APP = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
ADDR = 0x26011BDA
EUI_A, EUI_B = "AA555A0000000101", "AA555A0000000102"


def write_keys(tmp_path: Path) -> Path:
    path = tmp_path / "sessions.toml"
    path.write_text(
        '[[device]]\nname = "bin-0042"\ntype = "waste-bin"\ndev_addr = "26011BDA"\n'
        f'nwk_skey = "{NWK.hex()}"\napp_skey = "{APP.hex()}"\n'
    )
    path.chmod(0o600)
    return path


def make_driver(tmp_path: Path, **extra: object) -> LoRaWANDriver:
    section = Section.parse(
        {"name": "lora", "port": 0, "sessions": str(write_keys(tmp_path)), **extra}
    )
    env = DriverEnv(state_dir=tmp_path / "state", config_dir=tmp_path)
    driver = build(section, env)
    assert isinstance(driver, LoRaWANDriver)
    return driver


class Collected:
    def __init__(self) -> None:
        self.items: list[Reading | Event] = []
        self.arrived = asyncio.Event()

    async def __call__(self, items: Sequence[Reading | Event]) -> None:
        self.items.extend(items)
        self.arrived.set()

    def readings(self, point: str) -> list[Reading]:
        return [i for i in self.items if isinstance(i, Reading) and i.point == point]

    async def wait(self, point: str, count: int, timeout: float = 10) -> bool:
        async with asyncio.timeout(timeout):
            while len(self.readings(point)) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return True


@contextlib.asynccontextmanager
async def running(driver: LoRaWANDriver) -> AsyncIterator[Collected]:
    collected = Collected()
    task = asyncio.create_task(driver.run(collected))
    for _ in range(1000):  # bound: 10 s
        if driver.port is not None:
            break
        await asyncio.sleep(0.01)
    try:
        yield collected
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        driver.port = None


def bin_frame(fcnt: int, distance: int = 660, temp: float = 21.0) -> bytes:
    return build_uplink(ADDR, fcnt, 1, bin_report(distance, temp), NWK, APP)


async def test_copies_through_two_forwarders_collapse_to_the_best(tmp_path: Path) -> None:
    driver = make_driver(tmp_path, dedup_window=0.3)
    async with running(driver) as got:
        assert driver.port is not None
        async with (
            PacketForwarder(EUI_A, driver.port) as a,
            PacketForwarder(EUI_B, driver.port) as b,
        ):
            frame = bin_frame(1)
            assert await a.uplink(frame, rssi=-110, lsnr=-2)
            assert await b.uplink(frame, rssi=-80, lsnr=9)
            assert await got.wait("fill", 1)
            await asyncio.sleep(0.5)
    assert len(got.readings("fill")) == 1
    assert got.readings("rssi")[0].value == -80.0
    assert driver.counters()["collapsed"] == 1
    names = {h.device for h in driver.health()}
    assert names == {"bin-0042", f"forwarder-{EUI_A}", f"forwarder-{EUI_B}"}


async def test_garbage_bad_mic_and_replays_are_survived_and_counted(tmp_path: Path) -> None:
    driver = make_driver(tmp_path, dedup_window=0.05)
    async with running(driver) as got:
        assert driver.port is not None
        async with PacketForwarder(EUI_A, driver.port) as fwd:
            fwd.raw(b"")
            fwd.raw(b"\x02\x00")  # truncated header
            fwd.raw(b"\x02\x00\x01\x00" + bytes.fromhex(EUI_A) + b"{not json")
            fwd.raw(b"\x01" + bytes(40))  # wrong protocol version
            forged = bytearray(bin_frame(1))
            forged[-2] ^= 0xFF
            assert await fwd.uplink(bytes(forged))
            assert await fwd.uplink(bin_frame(1))
            assert await got.wait("fill", 1)
            assert await fwd.uplink(bin_frame(1))  # the same frame again, later: a replay
            assert await fwd.keepalive()
            assert await fwd.uplink(bin_frame(2, distance=100))
            assert await got.wait("fill", 2)
            health = {h.device: h for h in driver.health()}
            assert f"forwarder-{EUI_A}" in health
    counts = driver.counters()
    assert counts["bad-mic"] == 1 and counts["replay"] == 1
    assert counts["datagram.too-short"] >= 1  # an empty datagram may not even be delivered
    assert counts["datagram.bad-json"] == 1 and counts["datagram.bad-version"] == 1
    assert [r.value for r in got.readings("fill")] == [
        pytest.approx(40.0),
        pytest.approx(90.9, abs=0.1),
    ]
    assert [(e.kind, e.active) for e in got.items if isinstance(e, Event)] == [("bin.full", True)]


async def test_a_replay_is_refused_after_a_restart(tmp_path: Path) -> None:
    first = make_driver(tmp_path, dedup_window=0.05)
    async with running(first) as got:
        assert first.port is not None
        async with PacketForwarder(EUI_A, first.port) as fwd:
            assert await fwd.uplink(bin_frame(5))
            assert await got.wait("fill", 1)
    first.decoder.counters.close()  # type: ignore[union-attr]
    again = make_driver(tmp_path, dedup_window=0.05)
    async with running(again) as got2:
        assert again.port is not None
        async with PacketForwarder(EUI_A, again.port) as fwd:
            assert await fwd.uplink(bin_frame(5))
            assert await fwd.uplink(bin_frame(6))
            assert await got2.wait("fill", 1)
    assert again.counters()["replay"] == 1
    assert len(got2.readings("fill")) == 1


async def test_read_and_write_say_what_they_can(tmp_path: Path) -> None:
    driver = make_driver(tmp_path)
    with pytest.raises(DeviceUnreachable, match="not heard"):
        await driver.read("bin-0042")
    with pytest.raises(PointNotWritable):
        await driver.write("bin-0042", "fill", 1)


async def test_a_key_file_readable_by_others_stops_only_this_driver(tmp_path: Path) -> None:
    driver = make_driver(tmp_path)
    (tmp_path / "sessions.toml").chmod(0o644)
    broken = make_driver(tmp_path)
    (tmp_path / "sessions.toml").chmod(0o644)  # make_driver wrote it 0600 again
    broken = LoRaWANDriver(broken.section, broken.env)
    assert broken.catalogue() == {} and broken.problem and "chmod 600" in broken.problem
    with pytest.raises(SetupError, match="chmod 600"):
        await broken.run(Collected())
    assert driver.catalogue()  # the one loaded before is unaffected


async def test_forwarder_status_reports_become_readings(tmp_path: Path) -> None:
    driver = make_driver(tmp_path)
    driver.stat_flush = 0.1
    async with running(driver) as got:
        assert driver.port is not None
        async with PacketForwarder(EUI_A, driver.port) as fwd:
            assert await fwd.status(rxnb=12, rxok=10, rxfw=10, ackr=100.0, dwnb=0, txnb=0)
            assert await got.wait("frames_received", 1)
    (received,) = got.readings("frames_received")
    assert received.device == f"forwarder-{EUI_A}" and received.value == 12
    assert got.readings("acked")[0].value == 100.0


async def test_a_broken_site_device_type_stops_only_this_driver(tmp_path: Path) -> None:
    site_types = tmp_path / "types"
    site_types.mkdir()
    (site_types / "waste-bin.toml").write_text('name = "waste-bin"\ncodec = "nonsense"\n')
    driver = make_driver(tmp_path, device_types=["types"])
    assert driver.catalogue() == {}
    assert driver.problem is not None and "waste-bin.toml" in driver.problem
    with pytest.raises(SetupError, match="codec"):
        await driver.run(Collected())
