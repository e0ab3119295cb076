"""A pyserial port read and written from asyncio, with port loss detected: the one
serial transport under every serial driver (NMEA, ASCII, Modbus RTU).

Why a non-blocking fd on the event loop rather than a reader thread: pyserial
already opens the device `O_NONBLOCK`, so `loop.add_reader` gives us bytes the
moment they arrive with no thread, no cross-thread queue and no blocking call to
interrupt on shutdown — cancelling a read is just cancelling an await. pyserial
is kept for what it does well: termios set-up (baud, framing, raw mode) and the
exclusive lock that keeps a second program off the line.

The port frames nothing: each chunk read goes to the `on_bytes` callback of
the framer above it (`line.SerialLine` for text lines, Modbus RTU's link for
frames), and waiters on `wait()` wake on every chunk, on loss and on close.

Loss: a USB adapter pulled out makes reads fail (EIO) or hit end-of-file, and
its device node vanishes. Read errors are seen at once; the node by `check()`
(a caller about to start a transaction), and every `check_interval` seconds
when one is given (a node that is gone, or now names another device, means the
line we hold is dead even if the fd still looks fine). A lost port wakes every
waiter with `PortLost` and sets `lost_event`; its owner closes and reopens it.

Reasons (`PortError.reason`, the health counter key) are snake_case words:
`absent`, `permission`, `busy`, `io`, `not_a_tty`, `settings`, `open_failed`,
`read_failed`, `write_failed`, `hangup`, `replaced`, `closed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import termios
from collections.abc import Callable
from pathlib import Path

import serial

from cityedge.sdk.model import DeviceUnreachable

_OPEN_ERRORS = {
    errno.ENOENT: ("absent", "no such device node (adapter unplugged?)"),
    errno.ENODEV: ("absent", "device not present"),
    errno.ENXIO: ("absent", "device not present"),
    errno.EACCES: ("permission", "permission denied (is the agent's user in group dialout?)"),
    errno.EPERM: ("permission", "permission denied"),
    errno.EBUSY: ("busy", "device busy"),
    errno.EIO: ("io", "input/output error"),
    errno.ENOTTY: ("not_a_tty", "not a serial device"),
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
    """An open line went away: unplugged, hung up, read or write error, closed."""


class SerialPort:
    """One serial device node, open or not: bytes in to `on_bytes`, bytes out by `write`."""

    def __init__(
        self,
        path: str,
        baud: int,
        *,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: int = 1,
        check_interval: float | None = None,
        on_bytes: Callable[[bytes], None],
    ) -> None:
        self.path = path
        self.baud = baud
        self._settings = {"bytesize": bytesize, "parity": parity, "stopbits": stopbits}
        self._check_interval = check_interval
        self._on_bytes = on_bytes
        self._serial: serial.Serial | None = None
        self._fd = -1
        self._node: tuple[int, int] | None = None
        self._lost: PortLost | None = None
        self._wake = asyncio.Event()
        self.lost_event = asyncio.Event()  # set when an open line dies
        self._watch: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._write_waiter: asyncio.Future[None] | None = None
        self.bytes_in = 0

    @property
    def is_open(self) -> bool:
        """Opened and not closed yet (it may have been lost meanwhile: see `lost`)."""
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
        settings = self._settings
        try:
            port = serial.Serial(
                port=self.path,
                baudrate=self.baud,
                bytesize=settings["bytesize"],
                parity=settings["parity"],
                stopbits=settings["stopbits"],
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
        except termios.error as exc:  # e.g. a pty refuses parity
            said = exc.args[-1] if exc.args else exc
            bits, parity, stop = settings["bytesize"], settings["parity"], settings["stopbits"]
            framing = f"{self.baud} {bits}{parity}{stop}"  # as config says it: 19200 8E1
            raise PortUnavailable(self.path, "settings", f"refuses {framing}: {said}") from None
        self._serial = port
        self._loop = loop
        self._fd = port.fileno()
        self._node = _node_of(self.path)
        self._lost = None
        self.lost_event.clear()
        loop.add_reader(self._fd, self._on_readable)
        if self._check_interval is not None:
            self._schedule_check(loop, self._check_interval)

    def close(self) -> None:
        """Close the port (idempotent); waiters wake to `PortLost`."""
        if self._serial is None:
            return
        self._stop_watching()
        port, self._serial = self._serial, None
        self._fd = -1
        # a hung-up line may refuse a clean close; the fd is released regardless
        with contextlib.suppress(OSError, serial.SerialException):
            port.close()
        self._lost = None
        self._wake.set()
        self._release_writer()

    def check_alive(self) -> None:
        """Raise `PortLost` if the line is closed or died (cheap: for inner loops)."""
        if self._lost is not None:
            raise self._lost
        if self._serial is None:
            raise PortLost(self.path, "closed", "not open")

    def check(self) -> None:
        """Like `check_alive`, and the device node must still be the one opened."""
        self.check_alive()
        node = _node_of(self.path)
        if node is None:
            raise self.lose("absent", "device node gone (adapter unplugged?)")
        if node != self._node:
            raise self.lose("replaced", "device node now names another device")

    def lose(self, reason: str, detail: str) -> PortLost:
        """Declare the open line dead (the first reason sticks); returns the error."""
        if self._lost is None:
            self._lost = PortLost(self.path, reason, detail)
            self._stop_watching()  # a dead fd stays readable: stop spinning on it
            self.lost_event.set()
            self._wake.set()
            self._release_writer()
        return self._lost

    # --- bytes ----------------------------------------------------------------------

    async def wait(self) -> None:
        """Until bytes arrive, or the line is lost or closed (check after waking)."""
        self._wake.clear()
        await self._wake.wait()

    async def write(self, data: bytes, timeout: float) -> None:
        """Write all of `data`; `TimeoutError` if the line does not take it in time."""
        view = memoryview(data)
        async with asyncio.timeout(timeout):
            while view:
                self.check_alive()
                try:
                    sent = os.write(self._fd, view)
                except BlockingIOError:
                    await self._writable()
                    continue
                except OSError as exc:
                    detail = f"write failed: {exc.strerror or exc}"
                    raise self.lose("write_failed", detail) from None
                view = view[sent:]

    # --- event-loop callbacks ------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self.lose("read_failed", f"read failed: {exc.strerror or exc}")
            return
        if not data:  # end of file: the other end hung up
            self.lose("hangup", "line hung up (adapter unplugged?)")
            return
        self.bytes_in += len(data)
        self._on_bytes(data)
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

    def _schedule_check(self, loop: asyncio.AbstractEventLoop, every: float) -> None:
        self._watch = loop.call_later(every, self._check_node, every)

    def _check_node(self, every: float) -> None:
        self._watch = None
        if self._serial is None or self._lost is not None:
            return
        with contextlib.suppress(PortLost):  # lost: waiters are woken, nobody to raise to
            self.check()
            if self._loop is not None:
                self._schedule_check(self._loop, every)

    def _stop_watching(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self._fd >= 0 and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)


def _node_of(path: str) -> tuple[int, int] | None:
    """(device, inode) of what `path` names now (following symlinks), None if gone."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return (st.st_rdev, st.st_ino)
