"""One serial port carrying Modbus RTU: opened with pyserial, read and written
from the event loop, and watched for loss.

pyserial does the termios set-up (baud, parity, stop bits, raw mode) and the
exclusive lock that keeps a second program off the line; it opens the device
non-blocking, so the fd goes straight onto the event loop (`add_reader`) and
bytes are taken the moment they arrive, with no reader thread to stop.

Loss: a USB adapter pulled out makes reads hit end-of-file or EIO and its
device node vanish. Reads notice the first at once (and wake whoever waits);
`check()` notices the second before each transaction. Either way the port is
lost: `PortError` tells the driver, which closes it and reopens it later.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import termios
from pathlib import Path

import serial

from cityedge.drivers.modbus.budget import LineFormat
from cityedge.sdk.model import DeviceUnreachable

MAX_BUFFERED = 4096  # bytes kept unread; a flood of noise beyond this is dropped (and counted)

_OPEN_ERRORS = {
    errno.ENOENT: ("absent", "no such device node (adapter unplugged?)"),
    errno.ENODEV: ("absent", "device not present"),
    errno.ENXIO: ("absent", "device not present"),
    errno.EACCES: ("permission", "permission denied (is the agent's user in group dialout?)"),
    errno.EPERM: ("permission", "permission denied"),
    errno.EBUSY: ("busy", "device busy"),
    errno.EIO: ("io", "input/output error"),
    errno.ENOTTY: ("not-a-tty", "not a serial device"),
}


class PortError(DeviceUnreachable):
    """The serial line cannot be used now. `why` says how (absent, hangup, busy…)."""

    reason = "port"

    def __init__(self, path: str, why: str, detail: str) -> None:
        self.path = path
        self.why = why
        self.detail = detail
        super().__init__(f"port {path}: {detail}")


class SerialPort:
    """A serial device node, open or not; bytes in are buffered until taken."""

    def __init__(self, path: str, line: LineFormat) -> None:
        self.path = path
        self.line = line
        self._serial: serial.Serial | None = None
        self._fd = -1
        self._node: tuple[int, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buffer = bytearray()
        self._arrived = asyncio.Event()
        self._lost: PortError | None = None
        self.lost_event = asyncio.Event()  # set when an open line dies
        self.overflow = 0  # bytes dropped because nobody took them

    @property
    def is_open(self) -> bool:
        return self._serial is not None and self._lost is None

    @property
    def lost(self) -> PortError | None:
        return self._lost

    def open(self) -> None:
        """Open and configure the port now; `PortError` says why not.

        Synchronous on purpose: opening non-blocking does not wait for the
        device, and the termios set-up is a few ioctls.
        """
        if self._serial is not None:
            if self._lost is None:
                return
            self.close()
        loop = asyncio.get_running_loop()
        try:
            port = serial.Serial(
                port=self.path,
                baudrate=self.line.baudrate,
                bytesize=self.line.bytesize,
                parity=self.line.parity,
                stopbits=self.line.stopbits,
                timeout=0,
                write_timeout=0,
                exclusive=True,  # one bus, one owner
            )
        except serial.SerialException as exc:
            code = exc.errno if isinstance(exc.errno, int) else None
            if code in _OPEN_ERRORS:
                why, detail = _OPEN_ERRORS[code]
            elif "lock" in str(exc).lower():
                why, detail = "busy", "in use by another program (locked)"
            else:
                why, detail = "open-failed", str(exc)
            raise PortError(self.path, why, detail) from None
        except (ValueError, OSError) as exc:  # settings the device refuses, odd ioctls
            raise PortError(self.path, "open-failed", str(exc)) from None
        except termios.error as exc:  # e.g. a pty refuses parity
            said = exc.args[-1] if exc.args else exc
            raise PortError(self.path, "settings", f"refuses {self.line}: {said}") from None
        self._serial = port
        self._fd = port.fileno()
        self._node = _node_of(self.path)
        self._loop = loop
        self._lost = None
        self.lost_event.clear()
        self._buffer.clear()
        loop.add_reader(self._fd, self._on_readable)

    def close(self) -> None:
        """Close the port (idempotent); a waiting reader wakes up to `PortError`."""
        if self._serial is None:
            return
        if self._loop is not None and self._fd >= 0:
            self._loop.remove_reader(self._fd)
        port, self._serial, self._fd = self._serial, None, -1
        # a hung-up line may refuse a clean close; the fd is released regardless
        with contextlib.suppress(OSError, serial.SerialException):
            port.close()
        self._lost = None
        self._buffer.clear()
        self._arrived.set()

    def check(self) -> None:
        """Raise `PortError` if the line is closed, died, or its node is gone."""
        if self._lost is not None:
            raise self._lost
        if self._serial is None:
            raise PortError(self.path, "closed", "not open")
        node = _node_of(self.path)
        if node is None:
            raise self._lose("absent", "device node gone (adapter unplugged?)")
        if node != self._node:
            raise self._lose("replaced", "device node now names another device")

    # --- bytes ---------------------------------------------------------------------

    def discard(self) -> int:
        """Drop what arrived unasked (noise, a late reply); returns how many bytes."""
        dropped = len(self._buffer)
        self._buffer.clear()
        return dropped

    async def receive(self, deadline: float) -> bytes:
        """The bytes that arrived (waiting for some until `deadline`, loop time).

        Returns b"" at the deadline; raises `PortError` when the line is lost.
        """
        loop = asyncio.get_running_loop()
        while not self._buffer:
            self.check_alive()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return b""
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    async def send(self, data: bytes, timeout: float) -> None:
        """Write all of `data`; `PortError` if the line refuses it or does not take it in time."""
        view = memoryview(data)
        try:
            async with asyncio.timeout(timeout):
                while view:
                    self.check_alive()
                    try:
                        view = view[os.write(self._fd, view) :]
                    except BlockingIOError:
                        await self._writable()
                    except OSError as exc:
                        raise self._lose("io", f"write failed: {exc.strerror or exc}") from None
        except TimeoutError:
            raise self._lose("stalled", f"line took no bytes for {timeout:g} s") from None

    def check_alive(self) -> None:
        """Like `check()` without looking at the node (cheap: for inner loops)."""
        if self._lost is not None:
            raise self._lost
        if self._serial is None:
            raise PortError(self.path, "closed", "not open")

    # --- event-loop callbacks ------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lose("io", f"read failed: {exc.strerror or exc}")
            return
        if not data:  # end of file: the other end hung up
            self._lose("hangup", "line hung up (adapter unplugged?)")
            return
        self._buffer += data
        if len(self._buffer) > MAX_BUFFERED:
            excess = len(self._buffer) - MAX_BUFFERED
            del self._buffer[:excess]
            self.overflow += excess
        self._arrived.set()

    async def _writable(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = self._fd

        def release() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_writer(fd, release)
        try:
            async with asyncio.timeout(0.05):  # re-check the line now and then
                await ready
        except TimeoutError:
            pass
        finally:
            loop.remove_writer(fd)

    def _lose(self, why: str, detail: str) -> PortError:
        if self._lost is None:
            self._lost = PortError(self.path, why, detail)
            if self._loop is not None and self._fd >= 0:
                self._loop.remove_reader(self._fd)  # a dead fd stays readable: stop spinning
            self.lost_event.set()
            self._arrived.set()
        return self._lost


def _node_of(path: str) -> tuple[int, int] | None:
    """(device, inode) of what `path` names now, None if nothing."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return (st.st_rdev, st.st_ino)
