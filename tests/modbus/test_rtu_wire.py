"""The RTU edge: the framer byte at a time and under seeded loss; the master's
transaction against pymodbus's RTU server over real ptys, with every kind of
bad reply named; a server that resynchronises after noise; fuzzed replies."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cityedge.drivers.modbus.budget import LineFormat
from cityedge.drivers.modbus.errors import (
    BadReply,
    CrcError,
    ExceptionReply,
    LinkTimeout,
    TruncatedReply,
)
from cityedge.drivers.modbus.points import RegisterKind
from cityedge.drivers.modbus.profile import resolve_profile
from cityedge.drivers.modbus.rtu import RtuLink, find_frame, rtu_crc
from cityedge.drivers.serialline.port import PortError
from cityedge.sdk.model import DeviceError
from cityedge.street.modbus import Fault, SimulatedDevice, TrafficController
from cityedge.street.modbus_server import SerialDeviceServer
from cityedge.street.rs485 import Cable

pytestmark = pytest.mark.timeout(60)

H, IN = RegisterKind.HOLDING, RegisterKind.INPUT
LINE = LineFormat(19200, parity="N", stopbits=2)  # a pty refuses parity; 11 bits a character


def frame(body: bytes) -> bytes:
    return body + rtu_crc(body)


# a reply of unit 1 to "read holding 0+2": 0x0001 0x0050
REPLY = frame(bytes.fromhex("0103040001 0050".replace(" ", "")))
REQUEST = frame(bytes.fromhex("010300000002"))


# --- the framer alone -----------------------------------------------------------------


def test_crc_is_the_modbus_one() -> None:
    # the spec's own example: 01 03 00 00 00 02 has CRC C4 0B (low byte first)
    assert REQUEST.hex() == "010300000002c40b"


def test_a_frame_byte_at_a_time() -> None:
    for n in range(len(REPLY)):
        assert find_frame(REPLY[:n]) is None, n
    assert find_frame(REPLY) == (0, len(REPLY))
    assert find_frame(REQUEST, replies=False) == (0, 8)


def test_noise_before_a_frame_is_skipped_and_a_bad_crc_is_not_a_frame() -> None:
    assert find_frame(b"\x00\xff\x13" + REPLY) == (3, 3 + len(REPLY))
    broken = REPLY[:-1] + bytes([REPLY[-1] ^ 1])
    assert find_frame(broken) is None
    assert find_frame(broken + REPLY) == (len(broken), 2 * len(REPLY))  # the next good one
    exception = frame(bytes([1, 0x83, 2]))
    assert find_frame(exception) == (0, 5)


def test_a_stream_under_seeded_loss_yields_only_intact_frames() -> None:
    rng = random.Random(7)
    replies = [frame(bytes([unit, 3, 4, rng.randrange(256), 0, 0, unit])) for unit in range(1, 200)]
    stream = bytearray()
    kept: set[bytes] = set()
    for reply in replies:
        damaged = bytearray(reply)
        if rng.random() < 0.2:
            del damaged[rng.randrange(len(damaged))]
        elif rng.random() < 0.2:
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        else:
            kept.add(reply)
        stream += damaged
    found: list[bytes] = []
    rest = bytes(stream)
    for _ in range(len(replies)):  # bounded: one frame per round at most
        hit = find_frame(rest)
        if hit is None:
            break
        found.append(rest[hit[0] : hit[1]])
        rest = rest[hit[1] :]
    assert set(found) == kept  # every intact frame, nothing made of damaged ones
    assert len(kept) > 100


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_any_bytes_give_a_frame_with_a_good_crc_or_none(data: bytes, replies: bool) -> None:
    hit = find_frame(data, replies=replies)
    if hit is not None:
        start, end = hit
        assert 0 <= start < end <= len(data) and end - start >= 4
        assert data[end - 2 : end] == rtu_crc(data[start : end - 2])


# --- the master against pymodbus's RTU server, over ptys ----------------------------------


@dataclass
class Bench:
    cable: Cable
    link: RtuLink
    lamp: SimulatedDevice
    signals: TrafficController


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    lamp = SimulatedDevice("lamp", resolve_profile("lamppost"), unit=1)
    lamp.put("lamp_on", True)
    lamp.put("dimming", 80)
    signals = TrafficController("tc", resolve_profile("traffic-controller"), unit=2)
    async with Cable(tmp_path) as cable:
        server = await SerialDeviceServer.start([lamp, signals], str(cable.device_end), LINE)
        link = RtuLink(str(cable.gateway_end), LINE)
        try:
            await link.open(1.0)
            yield Bench(cable, link, lamp, signals)
        finally:
            await link.close()
            await server.stop()


async def test_reads_and_writes_by_unit(bench: Bench) -> None:
    link = bench.link
    assert await link.read(H, 0, 2, unit=1, timeout=1.0) == [1, 80]
    await link.write(H, 1, [35], unit=1, timeout=1.0)
    assert bench.lamp.get("dimming") == 35
    await link.write(H, 1, [3], unit=2, timeout=1.0)  # plan 3 at the traffic controller
    assert bench.signals.get("plan") == 3
    values = await link.read(IN, 0, 10, unit=2, timeout=1.0)
    assert len(values) == 10 and values[4] == 1  # the running plan changes at cycle end
    meter = link.meter
    assert meter.transactions == 4
    # request + reply bytes, counted on the wire
    assert meter.bytes_sent == 8 + 8 + 8 + 8
    assert meter.bytes_received == (5 + 4) + 8 + 8 + (5 + 20)
    assert link.stray == 0


async def test_every_bad_reply_is_named(bench: Bench) -> None:
    link, lamp = bench.link, bench.lamp
    with pytest.raises(LinkTimeout, match=r"no answer to read holding 0\+2 unit 9 within 0.1 s"):
        await link.read(H, 0, 2, unit=9, timeout=0.1)  # nobody at unit 9
    lamp.fault = Fault.BAD_CRC
    with pytest.raises(CrcError, match="9 bytes, CRC does not match") as crc:
        await link.read(H, 0, 2, unit=1, timeout=0.3)
    assert crc.value.reason == "crc"
    lamp.fault = Fault.TRUNCATED
    with pytest.raises(TruncatedReply, match="6 of 9 bytes, then silence") as cut:
        await link.read(H, 0, 2, unit=1, timeout=0.2)
    assert cut.value.reason == "truncated"
    lamp.fault = Fault.GARBAGE
    with pytest.raises(BadReply, match="got 1 values"):
        await link.read(H, 0, 2, unit=1, timeout=0.3)
    lamp.fault = Fault.EXCEPTION
    with pytest.raises(ExceptionReply, match=r"exception 4 \(server device failure\)") as no:
        await link.read(H, 0, 2, unit=1, timeout=0.3)
    assert no.value.reason == "exception-4"
    lamp.fault = None
    with pytest.raises(ExceptionReply) as past:
        await link.read(H, 20, 5, unit=1, timeout=0.3)
    assert past.value.code == 2
    with pytest.raises(ExceptionReply) as manual:
        await link.write(H, 0, [3], unit=2, timeout=0.3)  # manual mode, remotely
    assert manual.value.code == 3
    # somebody else answers (a corrupted unit byte reached another device)
    lamp.mangle = lambda reply: frame(bytes([7]) + reply[1:-2])
    with pytest.raises(BadReply, match="answered by unit 7 function 3"):
        await link.read(H, 0, 2, unit=1, timeout=0.3)
    # noise before a good reply: skipped and counted, the reply taken
    lamp.mangle = lambda reply: b"\x00\xfe" + reply
    assert await link.read(H, 0, 2, unit=1, timeout=0.3) == [1, 80]
    assert link.stray == 2
    lamp.mangle = None
    assert await link.read(H, 0, 2, unit=1, timeout=1.0) == [1, 80]


async def test_a_late_reply_is_dropped_before_the_next_request(bench: Bench) -> None:
    link, lamp = bench.link, bench.lamp
    # the device answers a request with its previous answer, then the real one
    stale = frame(bytes.fromhex("0103020063"))  # one register, 99
    lamp.mangle = lambda reply: reply + stale
    heard = bench.cable.stats.to_gateway
    before = heard.bytes
    assert await link.read(H, 0, 2, unit=1, timeout=0.5) == [1, 80]
    lamp.mangle = None
    async with asyncio.timeout(5):  # the relay has passed the trailing frame on
        while heard.bytes < before + 9 + len(stale):  # noqa: ASYNC110 (9: the 2-register reply)
            await asyncio.sleep(0.01)
    assert await link.read(H, 1, 1, unit=1, timeout=0.5) == [80]  # not the stale 99
    assert link.stray == len(stale)


async def test_the_server_resynchronises_after_a_corrupted_request(bench: Bench) -> None:
    # function 3 turned into 16 by noise: pymodbus's own RTU framer would wait
    # for the long frame it announces and stay deaf to the next requests
    poison = bytearray(frame(bytes.fromhex("011000100002")))
    poison[1] = 0x10
    fd = os.open(bench.cable.gateway_end, os.O_WRONLY | os.O_NOCTTY)
    try:
        os.write(fd, bytes(poison) + b"\x10\x00\xff")
    finally:
        os.close(fd)
    await asyncio.sleep(0.05)
    for _ in range(3):
        assert await bench.link.read(H, 0, 2, unit=1, timeout=0.5) == [1, 80]


async def test_port_problems_are_port_errors(tmp_path: Path) -> None:
    missing = RtuLink(str(tmp_path / "ttyNONE"), LINE)
    with pytest.raises(PortError, match="no such device node") as absent:
        await missing.open(1.0)
    assert absent.value.reason == "absent"
    with pytest.raises(PortError, match="not open"):
        await missing.read(H, 0, 1, unit=1, timeout=0.1)
    async with Cable(tmp_path) as cable:
        parity = RtuLink(str(cable.gateway_end), LineFormat(19200, parity="E"))
        await parity.open(1.0)  # a pty has no parity bit: it drops it silently at first...
        await parity.close()
        with pytest.raises(PortError, match=r"refuses 19200 8E1") as refused:
            await parity.open(1.0)  # ...and refuses it when set again
        assert refused.value.reason == "settings"
        plain = tmp_path / "not-a-tty"
        plain.write_bytes(b"")
        with pytest.raises(PortError) as not_tty:
            await RtuLink(str(plain), LINE).open(1.0)
        assert not_tty.value.reason == "open_failed"  # pyserial reports ENOTTY without an errno


async def test_a_pulled_adapter_is_a_port_error_at_once(bench: Bench) -> None:
    assert await bench.link.read(H, 0, 2, unit=1, timeout=1.0) == [1, 80]
    await bench.cable.unplug()
    with pytest.raises(PortError) as lost:
        await bench.link.read(H, 0, 2, unit=1, timeout=5.0)
    assert lost.value.reason in ("hangup", "absent", "read_failed")
    assert not bench.link.is_open


# --- fuzzed replies -------------------------------------------------------------------


def _with_body(reply: bytes, body: bytes, crc_ok: bool) -> bytes:
    out = reply[:1] + body
    return out + (rtu_crc(out) if crc_ok else b"\x00\x00")


replies = st.one_of(
    st.binary(max_size=60).map(lambda raw: lambda reply: raw),  # anything at all
    st.tuples(st.binary(max_size=60), st.booleans()).map(  # well framed, any content
        lambda t: lambda reply: _with_body(reply, t[0], t[1])
    ),
    st.integers(min_value=0, max_value=8).map(lambda n: lambda reply: reply[:n]),  # cut short
    st.tuples(st.integers(0, 8), st.integers(0, 7)).map(  # one bit flipped
        lambda t: (
            lambda reply: bytes(b ^ (1 << t[1]) if i == t[0] else b for i, b in enumerate(reply))
        )
    ),
)


def test_any_reply_becomes_values_or_one_of_our_errors(tmp_path: Path) -> None:
    outcomes: set[str] = set()

    async def setup() -> tuple[Cable, SerialDeviceServer, RtuLink, SimulatedDevice]:
        lamp = SimulatedDevice("fuzzed", resolve_profile("lamppost"), unit=1)
        lamp.put("lamp_on", True)
        lamp.put("dimming", 80)
        cable = await Cable(tmp_path).__aenter__()
        server = await SerialDeviceServer.start([lamp], str(cable.device_end), LINE)
        link = RtuLink(str(cable.gateway_end), LINE, gap=0.001)
        await link.open(1.0)
        return cable, server, link, lamp

    with asyncio.Runner() as runner:
        cable, server, link, lamp = runner.run(setup())

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(replies)
        def exchange(mangle: object) -> None:
            lamp.mangle = mangle  # type: ignore[assignment]
            try:
                values = runner.run(link.read(H, 0, 2, unit=1, timeout=0.05))
            except (LinkTimeout, BadReply, ExceptionReply) as exc:
                outcomes.add(type(exc).__name__)
                return
            except DeviceError as exc:  # pragma: no cover - would be a translation gap
                raise AssertionError(f"untranslated {exc!r}") from exc
            assert len(values) == 2 and all(0 <= v <= 0xFFFF for v in values)
            outcomes.add("values")

        try:
            exchange()
            lamp.mangle = None  # and the link still works afterwards
            assert runner.run(link.read(H, 0, 2, unit=1, timeout=1.0)) == [1, 80]
        finally:
            runner.run(link.close())
            runner.run(server.stop())
            runner.run(cable.close())
    assert {"CrcError", "TruncatedReply", "LinkTimeout"} <= outcomes, outcomes
