"""The NMEA driver on a real pseudo-terminal: a replayed capture decodes to the expected
positions, speeds and times; bad input is counted, never fatal; port loss and recovery."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from cityedge.drivers.nmea import Section, build
from cityedge.drivers.nmea.driver import DEVICE_TYPE, NmeaDriver
from cityedge.drivers.nmea.receiver import FIX_LOST
from cityedge.drivers.nmea.sentence import frame
from cityedge.sdk.driver import Driver
from cityedge.sdk.health import UNREACHABLE_EVENT
from cityedge.sdk.model import (
    DeviceState,
    DeviceUnreachable,
    PointAccess,
    PointNotWritable,
    Reading,
    UnknownDevice,
    UnknownPoint,
)
from cityedge.street.gps import load_capture, replay
from cityedge.street.ptypair import PtyPair
from tests.serial.support import CAPTURE, FAST_LINE, Sink, env, health_of, running, until

pytestmark = pytest.mark.timeout(60)

DEVICE = "bus-12-gps"


def make_driver(pair: PtyPair, tmp_path: Path, **overrides: Any) -> NmeaDriver:
    raw = {"name": "gps", "device": DEVICE, "port": str(pair.link), "baud": 4800, "interval": 0,
           "epoch_gap": 0.05, "stale_after": 30.0, **FAST_LINE, **overrides}  # fmt: skip
    driver = build(Section.parse(raw), env(tmp_path))
    assert isinstance(driver, Driver)
    return driver


def utc(
    year: int, month: int, day: int, hour: int, minute: int, second: int, micro: int = 0
) -> float:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC).timestamp()


def sets(sink: Sink) -> list[dict[str, object]]:
    """The reading sets in the order emitted (one set per epoch, one timestamp each)."""
    out: dict[float, dict[str, object]] = {}
    for r in sink.readings:
        out.setdefault(r.ts, {})[r.point] = r.value
    return list(out.values())


def one_epoch(hms: str) -> bytes:
    return b"".join(
        frame(body) + b"\r\n"
        for body in (
            f"GPGGA,{hms},4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
            f"GPRMC,{hms},A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W",
        )
    )


async def test_a_replayed_capture_decodes_to_the_published_values(
    pty_pair: PtyPair, tmp_path: Path
) -> None:
    driver = make_driver(pty_pair, tmp_path)
    lines = load_capture(CAPTURE)
    async with running(driver) as sink:
        await until(lambda: driver.listening, "port open")
        await replay(pty_pair.send, lines)
        await until(lambda: len(sink.values("clock_hint")) == 5, "the last epoch emitted")
        health = health_of(driver, DEVICE)

    positions = list(zip(sink.values("latitude"), sink.values("longitude"), strict=True))
    assert positions == [
        (48.1173, 11.5166667),  # 48°07.038'N 11°31.000'E (NMEA reference example)
        (37.3874583, -121.97236),  # 37°23.2475'N 121°58.3416'W (SiRF manual)
        (47.2852395, 8.5652537),  # u-blox RMC example
        (47.2852332, 8.565265),  # u-blox GGA example
        (47.4088137, 9.618071),  # GN talker (Leica manual)
        (60.4478263, 22.2856865),  # fix regained: GGA …
        (60.4478248, 22.2856812),  # … then RMC, a second later
    ]
    # 22.4 kn, 0.13 kn, VTG's 0.008 km/h, 0.01 kn, 0.689 kn — all as km/h
    assert sink.values("speed") == [41.485, 0.241, 0.008, 0.019, 1.276]
    assert sink.values("heading") == [84.4, 309.62, 77.52, 144.09]  # the last RMC has none
    assert sink.values("altitude") == [545.4, 9.0, 499.6, 66.1]
    assert sink.values("clock_hint") == [
        utc(1994, 3, 23, 12, 35, 19),
        pytest.approx(utc(1998, 5, 12, 16, 12, 29, micro=487_000)),
        utc(2002, 12, 9, 8, 35, 59),
        utc(2014, 11, 14, 15, 47, 6),
        utc(2022, 7, 15, 20, 12, 30),
    ]
    assert sink.values("fix") == [0, 1, 1, 1, 1, 1, 0, 0, 1, 1]
    assert sink.values("satellites")[:3] == [0, 8, 7]
    # no position ever leaves without a fix: cold start, and the lost fix at 21:02
    for reading_set in sets(sink):
        assert ("latitude" in reading_set) == (reading_set["fix"] != 0), reading_set
    assert sink.kinds(FIX_LOST) == [True, False, True, False]
    assert not sink.kinds(UNREACHABLE_EVENT)

    # the capture's bad lines were counted, not fatal: a published VTG whose checksum
    # does not add up, and a GGA cut short
    assert health.state is DeviceState.UP
    assert health.errors == {"checksum": 1, "truncated": 1}
    assert health.requests == len(lines)

    latest = {r.point: r.value for r in await driver.read(DEVICE)}
    assert latest["latitude"] == 60.4478248 and latest["fix"] == 1
    assert "heading" not in latest  # the last epoch had no course: no stale heading either


async def test_bad_input_is_counted_logged_once_and_never_fatal(
    pty_pair: PtyPair, tmp_path: Path
) -> None:
    driver = make_driver(pty_pair, tmp_path, max_line=256)
    noise = random.Random(6)
    garbage = [
        bytes(noise.randrange(256) for _ in range(600)),  # line noise, CR/LF included
        b"\x00\xff" * 40 + b"\r\n",
        b"x" * 10_240 + b"\r\n",  # a 10 kB line
        b"$GPGGA,123519,4807.038,N,01131.0\r\n",  # truncated
        b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*48\r\n",  # checksum
        b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n"[:30],
        b"\r\n",
    ]
    with capture_logs() as logs:
        async with running(driver) as sink:
            await until(lambda: driver.listening, "port open")
            for chunk in garbage:
                await pty_pair.send(chunk)
            await pty_pair.send(one_epoch("123519") + one_epoch("123520"))
            await until(lambda: len(sink.values("latitude")) == 2, "good sentences after the noise")
            health = health_of(driver, DEVICE)
    assert health.state is DeviceState.UP
    # Every bad line counted exactly, however the pty cut the bytes into reads (under
    # load the noise and the 10 kB line came in separate reads, and one overlong line
    # per read was all that was counted): the seeded noise holds a 389-byte line and
    # lines of 158 and 38 bytes; its 12-byte tail runs into the 0x00 0xff line.
    assert health.errors == {
        "overlong": 2,  # the noise's 389-byte line, the 10 kB line
        "unframed": 2,  # noise lines that are no sentence at all
        "malformed": 1,
        "truncated": 2,  # the GGA cut short, the RMC cut at 30 bytes
        "checksum": 1,
    }
    warnings = [e for e in logs if e["event"] == "nmea.bad_input" and e["log_level"] == "warning"]
    assert len(warnings) == 1  # loud once; the rest quietly, all counted
    assert warnings[0]["device"] == DEVICE and warnings[0]["port"] == str(pty_pair.link)
    assert sink.values("latitude") == [48.1173, 48.1173]


async def test_unplug_and_replug_down_then_up_and_readings_resume(
    pty_pair: PtyPair, tmp_path: Path
) -> None:
    driver = make_driver(pty_pair, tmp_path)
    async with running(driver) as sink:
        await until(lambda: driver.listening, "port open")
        await pty_pair.send(one_epoch("100000") + one_epoch("100001"))
        await until(lambda: health_of(driver, DEVICE).state is DeviceState.UP, "receiver up")

        pty_pair.unplug()  # the USB adapter is pulled
        await until(lambda: health_of(driver, DEVICE).state is DeviceState.DOWN, "down")
        down = health_of(driver, DEVICE)
        assert str(pty_pair.link) in (down.detail or "")
        assert sink.kinds(UNREACHABLE_EVENT) == [True]
        with pytest.raises(DeviceUnreachable, match="port"):
            await driver.read(DEVICE)
        before = len(sink.values("latitude"))
        # while it is out, reopen attempts fail quietly with the backoff, and are counted
        await until(lambda: health_of(driver, DEVICE).errors.get("absent", 0) >= 2, "retries")

        pty_pair.plug()  # and plugged back in
        await until(lambda: driver.listening, "port reopened")
        for second in range(2, 40):  # a receiver talks once a second; here, until heard
            await pty_pair.send(one_epoch(f"1000{second:02d}"))
            if len(sink.values("latitude")) > before:
                break
            await asyncio.sleep(0.02)
        await until(lambda: health_of(driver, DEVICE).state is DeviceState.UP, "up again")
        assert sink.kinds(UNREACHABLE_EVENT) == [True, False]
        assert len(sink.values("latitude")) > before
    assert pty_pair.plugs == 2


async def test_the_node_vanishing_alone_is_a_loss_too(pty_pair: PtyPair, tmp_path: Path) -> None:
    driver = make_driver(pty_pair, tmp_path)
    async with running(driver) as sink:
        await until(lambda: driver.listening, "port open")
        await pty_pair.send(one_epoch("100000") + one_epoch("100001"))
        await until(lambda: health_of(driver, DEVICE).state is DeviceState.UP, "receiver up")
        pty_pair.unplug(hang_up=False)
        await until(lambda: health_of(driver, DEVICE).state is DeviceState.DOWN, "down")
        assert "device node gone" in (health_of(driver, DEVICE).detail or "")
        pty_pair.plug()
        await until(lambda: driver.listening, "port reopened")
        await pty_pair.send(one_epoch("100002") + one_epoch("100003"))
        await until(lambda: health_of(driver, DEVICE).state is DeviceState.UP, "up again")
        assert sink.kinds(UNREACHABLE_EVENT) == [True, False]


async def test_a_port_missing_at_start_is_down_until_it_appears(tmp_path: Path) -> None:
    pair = PtyPair(tmp_path / "gps")  # not plugged yet
    driver = make_driver(pair, tmp_path)
    async with running(driver) as sink:
        await until(lambda: health_of(driver, DEVICE).state is DeviceState.DOWN, "down")
        assert "no such device node" in (health_of(driver, DEVICE).detail or "")
        pair.plug()
        try:
            await until(lambda: driver.listening, "port opened once it appeared")
            await pair.send(one_epoch("100000") + one_epoch("100001"))
            await until(lambda: health_of(driver, DEVICE).state is DeviceState.UP, "up")
        finally:
            pair.unplug()
        assert sink.kinds(UNREACHABLE_EVENT)[:2] == [True, False]


async def test_a_receiver_that_says_nothing_useful_goes_down_with_a_hint(
    pty_pair: PtyPair, tmp_path: Path
) -> None:
    driver = make_driver(pty_pair, tmp_path, stale_after=0.3)
    async with running(driver) as sink:
        await until(lambda: driver.listening, "port open")
        for _ in range(400):  # wrong baud rate: bytes arrive, sentences never do
            if health_of(driver, DEVICE).state is DeviceState.DOWN:
                break
            await pty_pair.send(b"\xe6\x18~\x98\x80\r\n")
            await asyncio.sleep(0.01)
        health = health_of(driver, DEVICE)
        assert health.state is DeviceState.DOWN
        assert "no valid sentence" in (health.detail or "")
        assert "wrong baud rate?" in (health.detail or "")
        assert health.errors["silent"] == 1
        await pty_pair.send(one_epoch("100000") + one_epoch("100001"))
        await until(lambda: health_of(driver, DEVICE).state is DeviceState.UP, "up")
        assert sink.kinds(UNREACHABLE_EVENT) == [True, False]


async def test_read_write_and_catalogue(pty_pair: PtyPair, tmp_path: Path) -> None:
    driver = make_driver(pty_pair, tmp_path)
    with pytest.raises(DeviceUnreachable, match="not heard yet"):
        await driver.read(DEVICE)
    with pytest.raises(UnknownDevice):
        await driver.read("tram-7-gps")
    with pytest.raises(UnknownPoint, match="altitud"):
        await driver.read(DEVICE, ["altitud"])
    with pytest.raises(PointNotWritable, match="read-only"):
        await driver.write(DEVICE, "latitude", 45.0)
    with pytest.raises(UnknownPoint):
        await driver.write(DEVICE, "nope", 1)

    info = driver.catalogue()[DEVICE]
    assert info.device_type == DEVICE_TYPE and info.driver == "gps"
    assert set(info.points) == {"latitude", "longitude", "altitude", "speed", "heading", "fix",
                                "fix_mode", "satellites", "hdop", "clock_hint"}  # fmt: skip
    assert all(p.access is PointAccess.READ for p in info.points.values())
    assert info.points["speed"].unit == "km/h"

    async with running(driver):
        await until(lambda: driver.listening, "port open")
        await pty_pair.send(one_epoch("100000") + one_epoch("100001"))
        await until(lambda: "latitude" in {r.point for r in driver._receiver.latest.values()},
                    "a fix")  # fmt: skip
        readings = await driver.read(DEVICE, ["speed", "latitude", "speed"])
    assert [(r.point, r.value) for r in readings] == [("speed", 41.485), ("latitude", 48.1173)]
    assert all(isinstance(r, Reading) and r.device == DEVICE for r in readings)
