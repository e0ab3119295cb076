"""The pymodbus edge: whatever a device sends back, the client raises one of our
errors or returns what was asked for. Fuzzed with hypothesis over real TCP."""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.model import DeviceError
from drivers.modbus.points import RegisterKind
from drivers.modbus.profile import resolve_profile
from drivers.modbus.simulator import SimulatedDevice
from drivers.modbus.wire import (
    BadReply,
    DeviceServer,
    ExceptionReply,
    LinkDown,
    LinkTimeout,
    TcpLink,
)

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
