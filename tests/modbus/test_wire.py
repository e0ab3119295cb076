"""The pymodbus edge: whatever a device sends back, the client raises one of our
errors or returns what was asked for. Fuzzed with hypothesis over real TCP."""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cityedge.drivers.modbus.errors import BadReply, ExceptionReply, LinkDown, LinkTimeout
from cityedge.drivers.modbus.points import RegisterKind
from cityedge.drivers.modbus.profile import resolve_profile
from cityedge.drivers.modbus.tcp import TcpLink
from cityedge.sdk.model import DeviceError
from cityedge.street.modbus import SimulatedDevice
from cityedge.street.modbus_server import DeviceServer

H = RegisterKind.HOLDING


def with_header(frame: bytes, pdu: bytes) -> bytes:
    """`pdu` behind the MBAP header of the real reply (same transaction and unit)."""
    tid, proto, _length, unit = struct.unpack(">HHHB", frame[:7])
    return struct.pack(">HHHB", tid, proto, len(pdu) + 1, unit) + pdu


replies = st.one_of(
    st.binary(max_size=40).map(lambda raw: lambda frame: raw),  # anything at all
    st.binary(max_size=60).map(lambda pdu: lambda frame: with_header(frame, pdu)),
    st.tuples(st.sampled_from([3, 0x83, 4, 16]), st.binary(max_size=50)).map(
        lambda t: lambda frame: with_header(frame, bytes([t[0]]) + t[1])
    ),
)


@pytest.mark.timeout(120)
def test_any_reply_becomes_values_or_one_of_our_errors() -> None:
    device = SimulatedDevice("fuzzed", resolve_profile("lamppost"))
    device.put("lamp_on", True)
    device.put("dimming", 80)
    with asyncio.Runner() as runner:
        server = runner.run(DeviceServer.start(device))
        link = TcpLink("127.0.0.1", server.port, timeout=0.15)
        outcomes: set[str] = set()

        @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(replies)
        def exchange(mangle: object) -> None:
            device.mangle = mangle  # type: ignore[assignment]
            try:
                values = runner.run(link.read(H, 0, 21, unit=1, timeout=0.15))
            except (LinkTimeout, LinkDown, BadReply, ExceptionReply) as exc:
                outcomes.add(type(exc).__name__)
                return
            except DeviceError as exc:  # pragma: no cover - would be a translation gap
                raise AssertionError(f"untranslated {exc!r}") from exc
            assert len(values) == 21 and all(0 <= v <= 0xFFFF for v in values)
            outcomes.add("values")

        try:
            exchange()
            device.mangle = None  # and the link still works afterwards
            assert runner.run(link.read(H, 0, 2, unit=1, timeout=1.0)) == [1, 80]
        finally:
            runner.run(link.close())
            runner.run(server.stop())
    assert outcomes & {"BadReply", "ExceptionReply", "LinkTimeout"}, outcomes


class _SlowFirstAnswer:
    """A Modbus TCP device (raw MBAP over a real socket) that answers its very first
    request `delay` seconds late with register 111, and every later one at once
    with 222: a late reply that would be wrong for whatever was asked next."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.requests = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> _SlowFirstAnswer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            while True:
                header = await reader.readexactly(7)
                tid, _, length, unit = struct.unpack(">HHHB", header)
                await reader.readexactly(length - 1)
                self.requests += 1
                value = 111 if self.requests == 1 else 222
                if self.requests == 1:
                    await asyncio.sleep(self.delay)
                writer.write(struct.pack(">HHHBBBH", tid, 0, 5, unit, 3, 2, value))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


async def test_a_late_reply_is_never_taken_for_the_next_request() -> None:
    async with _SlowFirstAnswer(delay=0.3) as device:
        link = TcpLink("127.0.0.1", device.port, timeout=1.0)
        try:
            with pytest.raises(LinkTimeout, match="no answer to read holding 0\\+1 unit 1"):
                await link.read(H, 0, 1, unit=1, timeout=0.1)
            assert await link.read(H, 0, 1, unit=1, timeout=1.0) == [222]
            await asyncio.sleep(0.4)  # the late 111 arrives, on the dropped connection
            assert await link.read(H, 0, 1, unit=1, timeout=1.0) == [222]
        finally:
            await link.close()


async def test_a_cancelled_request_leaves_no_answer_behind() -> None:
    async with _SlowFirstAnswer(delay=0.2) as device:
        link = TcpLink("127.0.0.1", device.port, timeout=1.0)
        try:
            first = asyncio.create_task(link.read(H, 0, 1, unit=1, timeout=1.0))
            await asyncio.sleep(0.05)
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            # asked at once: on the same connection the first's late reply would come first
            assert await link.read(H, 0, 1, unit=1, timeout=1.0) == [222]
        finally:
            await link.close()
