"""A pyserial port read and written from asyncio, with port loss detected.

Why a non-blocking fd on the event loop rather than a reader thread: pyserial
already opens the device `O_NONBLOCK`, so `loop.add_reader` gives us bytes the
moment they arrive with no thread, no cross-thread queue and no blocking call to
interrupt on shutdown — cancelling a read is just cancelling an await. pyserial
is kept for what it does well: termios set-up (baud, framing, raw mode) and the
exclusive lock that keeps a second program off the line.

Loss: a USB adapter pulled out makes reads fail (EIO) or hit end-of-file, and
its device node vanishes. Both are watched: read errors at once, the node every
`check_interval` seconds (a node that is gone, or now names another device,
means the line we hold is dead even if the fd still looks fine). A lost line
wakes every reader with `PortLost`; the driver closes it and reopens later.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections import deque
from collections.abc import Callable
from pathlib import Path

import serial

from cityedge.drivers.serialline.framer import LineFramer
from cityedge.sdk.model import DeviceUnreachable

DropHook = Callable[[str, str], None]
"""Called with (reason, detail) for every line dropped before a driver saw it."""

_OPEN_ERRORS = {
    errno.ENOENT: ("absent", "no such device node (adapter unplugged?)"),
    errno.ENODEV: ("absent", "device not present"),
    errno.ENXIO: ("absent", "device not present"),
    errno.EACCES: ("permission", "permission denied (is the agent's user in group dialout?)"),
    errno.EPERM: ("permission", "permission denied"),
    errno.EBUSY: ("busy", "device busy"),
    errno.EIO: ("io", "input/output error"),
}


class PortError(DeviceUnreachable):
    """The serial line cannot be used; `reason` is a short health counter key."""

    def __init__(self, port: str, reason: str, detail: str) -> None:
        self.port = port
        self.reason = reason
        self.detail = detail
        super().__init__(f"port {port}: {detail}")


class PortUnavailable(PortError):
    """Opening failed: no such node, no permission, busy, unusable settings."""


class PortLost(PortError):
    """An open line went away: unplugged, hung up, read or write error."""


class SerialLine:
    """One serial port: open/close, bounded line reads, writes; loss detection.

    Lines are queued as they arrive (at most `queue_lines`; the oldest is
    dropped and reported when a reader falls behind), so a reader never loses
    a line to a timeout of its own.
    """

    def __init__(
        self,
        path: str,
        baud: int,
        *,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: int = 1,
        max_line: int = 1024,
        queue_lines: int = 256,
        check_interval: float = 1.0,
        on_dropped: DropHook | None = None,
    ) -> None:
        self.path = path
        self.baud = baud
        self._settings = {"bytesize": bytesize, "parity": parity, "stopbits": stopbits}
        self._framer = LineFramer(max_line)
        self._lines: deque[bytes] = deque()
        self._queue_lines = queue_lines
        self._check_interval = check_interval
        self._on_dropped = on_dropped
        self._serial: serial.Serial | None = None
        self._fd = -1
        self._rdev: int | None = None
        self._lost: PortLost | None = None
        self._wake = asyncio.Event()
        self._watch: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._write_waiter: asyncio.Future[None] | None = None
        self.bytes_in = 0
        self.lines_in = 0
        self.overrun = 0  # lines dropped because nobody read them in time

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    @property
    def lost(self) -> PortLost | None:
        """Why the open line died (until it is closed), else None."""
        return self._lost

    # --- lifetime ---------------------------------------------------------------------

    def open(self) -> None:
        """Open and configure the port; `PortUnavailable` says why not.

        Synchronous on purpose: opening `O_NONBLOCK` does not wait for the
        device, and termios set-up is a few ioctls.
        """
        if self._serial is not None:
            return
        loop = asyncio.get_running_loop()
        try:
            port = serial.Serial(
                port=self.path,
                baudrate=self.baud,
                bytesize=self._settings["bytesize"],
                parity=self._settings["parity"],
                stopbits=self._settings["stopbits"],
                timeout=0,
                write_timeout=0,
                exclusive=True,  # one bus, one owner: refuse a line another program holds
            )
        except serial.SerialException as exc:
            code = exc.errno if isinstance(exc.errno, int) else None
            if code in _OPEN_ERRORS:
                reason, detail = _OPEN_ERRORS[code]
            elif "lock" in str(exc).lower():
                reason, detail = "busy", "in use by another program (locked)"
            else:
                reason, detail = "open_failed", str(exc)
            raise PortUnavailable(self.path, reason, detail) from None
        except (ValueError, OSError) as exc:  # settings the device refuses, odd ioctls
            raise PortUnavailable(self.path, "open_failed", str(exc)) from None
        self._serial = port
        self._loop = loop
        self._fd = port.fileno()
        self._rdev = _node_id(self.path)
        self._lost = None
        self._framer.reset()
        self._lines.clear()
        loop.add_reader(self._fd, self._on_readable)
        self._schedule_check(loop)

    def close(self) -> None:
        """Close the port (idempotent); readers waiting get `PortLost`."""
        if self._serial is None:
            return
        self._stop_watching()
        port, self._serial = self._serial, None
        self._fd = -1
        # a hung-up line may refuse a clean close; the fd is released regardless
        with contextlib.suppress(OSError, serial.SerialException):
            port.close()
        self._lost = None
        self._lines.clear()
        self._framer.reset()
        self._wake.set()
        self._release_writer()

    # --- reading and writing ------------------------------------------------------------

    async def read_line(self, timeout: float) -> bytes:
        """The next complete line (without its CR/LF).

        Raises `TimeoutError` when none arrives in `timeout` seconds, and
        `PortLost` when the line is (or goes) away.
        """
        async with asyncio.timeout(timeout):
            while True:
                if self._lines:
                    return self._lines.popleft()
                if self._lost is not None:
                    raise self._lost
                if self._serial is None:
                    raise PortLost(self.path, "closed", "not open")
                self._wake.clear()
                await self._wake.wait()

    async def write(self, data: bytes, timeout: float) -> None:
        """Write all of `data`; `TimeoutError` if the line does not take it in time."""
        view = memoryview(data)
        async with asyncio.timeout(timeout):
            while view:
                if self._lost is not None:
                    raise self._lost
                if self._serial is None:
                    raise PortLost(self.path, "closed", "not open")
                try:
                    sent = os.write(self._fd, view)
                except BlockingIOError:
                    await self._writable()
                    continue
                except OSError as exc:
                    detail = f"write failed: {exc.strerror or exc}"
                    raise self._lose("write_failed", detail) from None
                view = view[sent:]

    def discard_input(self) -> int:
        """Drop queued lines and any partial line (late answers to an earlier request)."""
        dropped = len(self._lines)
        self._lines.clear()
        self._framer.reset()
        return dropped

    @property
    def overlong(self) -> int:
        return self._framer.overlong

    # --- event-loop callbacks ------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lose("read_failed", f"read failed: {exc.strerror or exc}")
            return
        if not data:  # end of file: the other end hung up
            self._lose("hangup", "line hung up (end of file)")
            return
        self.bytes_in += len(data)
        overlong = self._framer.overlong
        lines = self._framer.feed(data)
        if self._framer.overlong != overlong:
            self._dropped("overlong", f"line longer than {self._framer.max_line} bytes dropped")
        for line in lines:
            self.lines_in += 1
            if len(self._lines) >= self._queue_lines:
                self._lines.popleft()
                self.overrun += 1
                self._dropped("overrun", f"more than {self._queue_lines} lines unread")
            self._lines.append(line)
        if lines:
            self._wake.set()

    async def _writable(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._write_waiter = ready
        loop.add_writer(self._fd, self._release_writer)
        try:
            await ready
        finally:
            self._write_waiter = None
            if self._fd >= 0:
                loop.remove_writer(self._fd)

    def _release_writer(self) -> None:
        """Wake a writer waiting for room (the line drained, or it died)."""
        if self._write_waiter is not None and not self._write_waiter.done():
            self._write_waiter.set_result(None)

    def _schedule_check(self, loop: asyncio.AbstractEventLoop) -> None:
        self._watch = loop.call_later(self._check_interval, self._check_node)

    def _check_node(self) -> None:
        self._watch = None
        if self._serial is None or self._lost is not None:
            return
        node = _node_id(self.path)
        if node is None:
            self._lose("absent", "device node gone (adapter unplugged?)")
            return
        if node != self._rdev:
            self._lose("replaced", "device node now names another device")
            return
        if self._loop is not None:
            self._schedule_check(self._loop)

    def _lose(self, reason: str, detail: str) -> PortLost:
        if self._lost is None:
            self._lost = PortLost(self.path, reason, detail)
            self._stop_watching()
            self._wake.set()
            self._release_writer()
        return self._lost

    def _stop_watching(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self._fd >= 0 and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)

    def _dropped(self, reason: str, detail: str) -> None:
        if self._on_dropped is not None:
            self._on_dropped(reason, detail)


def _node_id(path: str) -> int | None:
    """The device number the path names now (following symlinks), None if gone."""
    try:
        return Path(path).stat().st_rdev
    except OSError:
        return None
