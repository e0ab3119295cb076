"""Devices that answer badly, on real pymodbus servers over loopback (issue 19, item 10):
exception responses, replies of the wrong length, another transaction's id, garbage
and undecodable values raise `device.bad_answer` upstream — once per fault of an
episode, cleared after the device answers in full again — not only DEGRADED health.
And a write whose answer comes late is never sent twice: the device, which counts the
writes it receives, gets one; what the caller hears is what a read-back showed."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import pytest

from cityedge.drivers.modbus import Section
from cityedge.drivers.modbus.answers import BAD_ANSWER_EVENT, CLEAR_AFTER
from cityedge.drivers.modbus.driver import ModbusDriver
from cityedge.drivers.modbus.errors import WriteUnconfirmed
from cityedge.drivers.modbus.profile import resolve_profile
from cityedge.gateway.commands.write import write_point
from cityedge.gateway.policy import Policy
from cityedge.sdk.model import Command, DeviceState, Event, Reading, ResultCode, Value
from cityedge.street.modbus import Fault, SimulatedDevice
from cityedge.street.modbus_server import DeviceServer

pytestmark = pytest.mark.timeout(60)

FAST = {"poll_interval": 0.2, "timeout": 0.4, "backoff_max": 0.4}
POLICY = Policy.parse({"lamppost": {"writes": {"dimming": {"min": 0, "max": 100}}}})


@pytest.fixture
async def lamppost() -> AsyncIterator[tuple[SimulatedDevice, DeviceServer]]:
    device = SimulatedDevice("lamppost-001", resolve_profile("lamppost"))
    server = await DeviceServer.start(device)
    try:
        yield device, server
    finally:
        await server.stop()


def driver_for(server: DeviceServer, retries: int = 1) -> ModbusDriver:
    tables = {"name": "street", "devices": [{"name": "lamppost-001", "profile": "lamppost",
              "host": "127.0.0.1", "port": server.port, "retries": retries, **FAST}]}  # fmt: skip
    return ModbusDriver(Section.parse(tables))


def events(items: list[Reading | Event]) -> list[tuple[bool | None, str]]:
    return [(e.active, e.data.get("reason") or ",".join(e.data["reasons"]))
            for e in items if isinstance(e, Event) and e.kind == BAD_ANSWER_EVENT]  # fmt: skip


def garbage(frame: bytes) -> bytes:
    """A well-framed reply whose PDU is not a reply to anything (function 0x2B, junk)."""
    tid, proto, _length, unit = struct.unpack(">HHHB", frame[:7])
    pdu = bytes([0x2B, 0xFF, 0x00, 0x13])
    return struct.pack(">HHHB", tid, proto, len(pdu) + 1, unit) + pdu


async def test_each_bad_answer_goes_upstream_once_and_clears_after_good_polls(
    lamppost: tuple[SimulatedDevice, DeviceServer],
) -> None:
    device, server = lamppost
    driver = driver_for(server)
    try:
        items: list[Reading | Event] = []
        for fault in (Fault.EXCEPTION, Fault.GARBAGE, Fault.WRONG_TID, None):
            device.fault = fault
            device.mangle = garbage if fault is None else None
            for _ in range(4):  # many polls, one event per fault
                items += await driver.poll("lamppost-001")
        (health,) = driver.health()
        assert health.state is DeviceState.DEGRADED
        assert not [i for i in items if isinstance(i, Reading)]  # nothing readable came
        raised = events(items)
        assert raised == [(True, "exception-4"), (True, "decode"), (True, "not-ours")]
        details = [e.data["detail"] for e in items if isinstance(e, Event)]
        assert "exception 4 (server device failure)" in details[0]
        assert "got 1 values" in details[1]  # one register where 21 were asked
        assert "another transaction's answer" in details[2]
        # the garbage PDU (function 0x2B) counted as decode: same episode, same fault
        assert health.errors["decode"] == 4 * 2 * 2  # 8 polls x (try + retry)

        device.mangle = None
        after = [await driver.poll("lamppost-001") for _ in range(CLEAR_AFTER)]
        assert [events(a) for a in after] == [[]] * (CLEAR_AFTER - 1) + [
            [(False, "decode,exception-4,not-ours")]
        ]
        assert all(len([i for i in a if isinstance(i, Reading)]) == 19 for a in after)
        # a new episode is a new event
        device.fault = Fault.EXCEPTION
        assert events(await driver.poll("lamppost-001")) == [(True, "exception-4")]
    finally:
        await driver.aclose()


async def test_a_device_that_fails_every_other_poll_is_one_event_not_a_stream(
    lamppost: tuple[SimulatedDevice, DeviceServer],
) -> None:
    device, server = lamppost
    driver = driver_for(server, retries=0)
    try:
        items: list[Reading | Event] = []
        for n in range(20):
            device.fault = Fault.EXCEPTION if n % 2 == 0 else None
            items += await driver.poll("lamppost-001")
        assert events(items) == [(True, "exception-4")]
    finally:
        await driver.aclose()


async def test_silence_is_unreachable_not_a_bad_answer(
    lamppost: tuple[SimulatedDevice, DeviceServer],
) -> None:
    device, server = lamppost
    driver = driver_for(server, retries=0)
    try:
        device.fault = Fault.SILENT
        items = await driver.poll("lamppost-001") + await driver.poll("lamppost-001")
        assert events(items) == []
        assert [e.kind for e in items if isinstance(e, Event)] == ["device.unreachable"]
    finally:
        await driver.aclose()


# --- writes whose answer is late or lost ---------------------------------------------------


async def test_a_write_answered_late_reaches_the_device_once_and_is_confirmed(
    lamppost: tuple[SimulatedDevice, DeviceServer],
) -> None:
    device, server = lamppost
    device.write_delay = 1.5  # applied at once, answered well after the 0.4 s timeout
    driver = driver_for(server, retries=2)  # reads may be retried; the write is not
    try:
        await driver.write("lamppost-001", "dimming", 30)
        assert device.writes == 1
        assert device.get("dimming") == 30
        (health,) = driver.health()
        assert health.errors == {"timeout": 1}
    finally:
        await driver.aclose()


async def test_a_write_whose_answer_never_comes_says_its_outcome_is_unknown(
    lamppost: tuple[SimulatedDevice, DeviceServer],
) -> None:
    device, server = lamppost
    device.fault = Fault.SILENT  # applies what it is sent, answers nothing
    driver = driver_for(server, retries=2)
    try:
        with pytest.raises(WriteUnconfirmed, match="unknown; it was not sent again"):
            await driver.write("lamppost-001", "dimming", 30)
        assert device.writes == 1  # before the fix: 3, one per attempt
        assert device.reads == 3  # the read-back, a read, may be retried
    finally:
        await driver.aclose()


async def test_a_write_not_applied_when_read_back_says_so(
    lamppost: tuple[SimulatedDevice, DeviceServer],
) -> None:
    device, server = lamppost
    device.put("dimming", 80)

    def lose_write_answers(frame: bytes) -> bytes:
        if frame[7] == 6:  # the echo of a single-register write: lost, and undone
            device.put("dimming", 80)
            return b""
        return frame

    device.mangle = lose_write_answers
    driver = driver_for(server, retries=2)
    try:
        with pytest.raises(WriteUnconfirmed, match="read back 80, not 30: not applied"):
            await driver.write("lamppost-001", "dimming", 30)
        assert device.writes == 1
    finally:
        await driver.aclose()


async def test_the_command_result_says_what_is_known(
    lamppost: tuple[SimulatedDevice, DeviceServer],
) -> None:
    device, server = lamppost
    driver = driver_for(server, retries=2)

    async def read(name: str, point: str) -> Value | None:
        return (await driver.read(name, [point]))[0].value

    async def command(value: int) -> tuple[ResultCode, str, bool | None]:
        cmd = Command("c1", "gw", "lamppost-001", "write", {"point": "dimming", "value": value},
                      0.0, 1e12, "k")  # fmt: skip
        result = await write_point(cmd, catalogue=driver.catalogue, policy=POLICY,
                                   write=driver.write, read=read, timeout=10)  # fmt: skip
        return result.code, result.detail, result.readback_matched

    try:
        device.write_delay = 1.0
        assert await command(40) == (ResultCode.DONE, "written", True)
        device.write_delay, device.fault = 0.0, Fault.SILENT
        code, detail, _ = await command(50)
        assert code is ResultCode.UNREACHABLE
        assert "whether the write was applied is unknown" in detail
        assert device.writes == 2  # one per command
    finally:
        await driver.aclose()
