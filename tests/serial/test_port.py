"""The serial line layer on real pseudo-terminals: lines, writes, garbage, loss, reopen."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cityedge.drivers.serialline.line import SerialLine
from cityedge.drivers.serialline.port import PortLost, PortUnavailable
from cityedge.sdk.backoff import Backoff
from cityedge.sdk.model import DeviceUnreachable
from cityedge.street.ptypair import PtyPair
from tests.serial.support import until


def open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


def line_on(pair: PtyPair, **options: object) -> SerialLine:
    settings: dict[str, object] = {"check_interval": 0.05, "max_line": 256} | options
    return SerialLine(str(pair.link), 9600, **settings)  # type: ignore[arg-type]


async def test_lines_in_and_bytes_out(pty_pair: PtyPair) -> None:
    line = line_on(pty_pair)
    line.open()
    try:
        await pty_pair.send(b"$GPGGA,one*00\r\nSTATUS OK\r\n")
        assert await line.read_line(timeout=5) == b"$GPGGA,one*00"
        assert await line.read_line(timeout=5) == b"STATUS OK"
        await line.write(b"STATUS?\r\n", timeout=5)
        got = b""
        async with asyncio.timeout(5):
            while not got.endswith(b"\r\n"):
                got += pty_pair.receive_nowait()
                await asyncio.sleep(0.005)
        assert got == b"STATUS?\r\n"
        assert line.lines_in == 2
    finally:
        line.close()


async def test_silence_is_a_timeout_not_a_loss(pty_pair: PtyPair) -> None:
    line = line_on(pty_pair)
    line.open()
    try:
        with pytest.raises(TimeoutError):
            await line.read_line(timeout=0.05)
        assert line.lost is None
    finally:
        line.close()


async def test_a_10kB_line_is_dropped_and_reported_then_lines_resume(pty_pair: PtyPair) -> None:
    dropped: list[tuple[str, str]] = []
    line = line_on(pty_pair, on_dropped=lambda reason, detail: dropped.append((reason, detail)))
    line.open()
    try:
        await pty_pair.send(b"x" * 10_240 + b"\r\nafter\r\n")
        assert await line.read_line(timeout=5) == b"after"
        assert line.overlong == 1
        assert dropped == [("overlong", "line longer than 256 bytes dropped")]
    finally:
        line.close()


async def test_each_overlong_line_is_reported_even_when_one_read_holds_several(
    pty_pair: PtyPair,
) -> None:
    dropped: list[str] = []
    line = line_on(pty_pair, on_dropped=lambda reason, _: dropped.append(reason))
    line.open()
    try:
        # three overlong lines, all small enough to arrive in one read of the pty
        await pty_pair.send((b"y" * 300 + b"\n") * 3 + b"after\n")
        assert await line.read_line(timeout=5) == b"after"
        assert line.overlong == 3
        assert dropped == ["overlong"] * 3
    finally:
        line.close()


async def test_a_reader_that_falls_behind_loses_the_oldest_lines_counted(
    pty_pair: PtyPair,
) -> None:
    dropped: list[str] = []
    line = line_on(pty_pair, queue_lines=4, on_dropped=lambda reason, _: dropped.append(reason))
    line.open()
    try:
        await pty_pair.send(b"".join(b"line %d\n" % i for i in range(10)))
        await until(lambda: line.lines_in == 10, "ten lines framed")
        assert [await line.read_line(timeout=1) for _ in range(4)] == [
            b"line 6", b"line 7", b"line 8", b"line 9"
        ]  # fmt: skip
        assert line.overrun == 6 and dropped == ["overrun"] * 6
    finally:
        line.close()


async def test_hang_up_wakes_a_waiting_reader_with_port_lost(pty_pair: PtyPair) -> None:
    line = line_on(pty_pair)
    line.open()
    try:
        reader = asyncio.create_task(line.read_line(timeout=10))
        await asyncio.sleep(0.01)
        pty_pair.unplug()  # what pulling the USB adapter does
        with pytest.raises(PortLost) as lost:
            await reader
        assert lost.value.reason in {"hangup", "read_failed", "absent"}
        assert isinstance(lost.value, DeviceUnreachable)
        assert str(pty_pair.link) in str(lost.value)
    finally:
        line.close()


async def test_node_removed_under_an_open_line_is_noticed(pty_pair: PtyPair) -> None:
    line = line_on(pty_pair)
    line.open()
    try:
        pty_pair.unplug(hang_up=False)  # the line still works; only the node is gone
        with pytest.raises(PortLost, match="device node gone") as lost:
            await line.read_line(timeout=10)
        assert lost.value.reason == "absent"
    finally:
        line.close()


async def test_node_pointing_at_another_device_is_noticed(tmp_path: Path) -> None:
    first = PtyPair(tmp_path / "gps")
    second = PtyPair(tmp_path / "other")
    first.plug()
    second.plug()
    line = SerialLine(str(first.link), 4800, check_interval=0.05)
    line.open()
    try:
        first.link.unlink()
        first.link.symlink_to(second.slave_path)  # another adapter enumerated under that name
        with pytest.raises(PortLost, match="another device"):
            await line.read_line(timeout=10)
    finally:
        line.close()
        first.unplug()
        second.unplug()


async def test_write_to_a_hung_up_line_is_port_lost(pty_pair: PtyPair) -> None:
    line = line_on(pty_pair, check_interval=60)
    line.open()
    try:
        pty_pair.unplug()
        with pytest.raises(PortLost):
            for _ in range(3):  # the first write may still land in the tty buffer
                await line.write(b"STATUS?\r\n", timeout=1)
                await asyncio.sleep(0.02)
    finally:
        line.close()


async def test_open_errors_say_why(tmp_path: Path, pty_pair: PtyPair) -> None:
    missing = SerialLine(str(tmp_path / "ttyUSB9"), 9600)
    with pytest.raises(PortUnavailable, match="no such device node") as absent:
        missing.open()
    assert absent.value.reason == "absent"

    not_a_tty = tmp_path / "plain-file"
    not_a_tty.write_text("")
    with pytest.raises(PortUnavailable) as odd:
        SerialLine(str(not_a_tty), 9600).open()
    assert odd.value.reason == "open_failed"

    holder = line_on(pty_pair)
    holder.open()
    try:
        with pytest.raises(PortUnavailable, match="in use") as busy:
            line_on(pty_pair).open()  # one bus, one owner
        assert busy.value.reason == "busy"
    finally:
        holder.close()


async def test_reopen_after_replug_reads_the_new_line(pty_pair: PtyPair) -> None:
    line = line_on(pty_pair)
    line.open()
    pty_pair.unplug()
    with pytest.raises(PortLost):
        await line.read_line(timeout=10)
    line.close()
    with pytest.raises(PortUnavailable):
        line.open()
    pty_pair.plug()
    line.open()
    try:
        await pty_pair.send(b"back\n")
        assert await line.read_line(timeout=5) == b"back"
    finally:
        line.close()
    assert pty_pair.plugs == 2


async def test_close_is_idempotent_and_releases_the_fd(pty_pair: PtyPair) -> None:
    before = open_fds()
    for _ in range(20):
        line = line_on(pty_pair)
        line.open()
        line.close()
        line.close()
    assert open_fds() == before
    with pytest.raises(PortLost, match="not open"):
        await line.read_line(timeout=1)


def test_backoff_doubles_to_its_ceiling_with_jitter_and_resets() -> None:
    backoff = Backoff(0.5, 4.0, jitter=0.0)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next() == 0.5
    jittered = Backoff(1.0, 8.0, jitter=0.2)
    delays = [jittered.next() for _ in range(200)]
    assert all(0.8 <= d <= 8 * 1.2 for d in delays)
    assert len(set(delays)) > 100  # spread out, not in lockstep
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)
