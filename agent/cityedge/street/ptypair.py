"""A virtual serial cable on a pseudo-terminal, with a plug you can pull.

The device end is the pty master, an fd a simulator reads and writes; the
driver end is a symlink to the slave node (`link`), the way
`/dev/serial/by-id/usb-…` points at `/dev/ttyUSB0`. `unplug()` does what
pulling a USB adapter does: the line hangs up under whoever holds it and the
node disappears; `replug()` brings a fresh line back under the same name.
Used by the device simulators, the tests and the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from pathlib import Path


class PtyPair:
    """One pseudo-terminal pair behind a stable symlink."""

    def __init__(self, link: Path | str) -> None:
        self.link = Path(link)
        self.master = -1
        self._slave = -1  # held so the master never reads EIO while the driver reconnects
        self.plugs = 0  # how many times a line was plugged in

    def __enter__(self) -> PtyPair:
        self.plug()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unplug()

    @property
    def plugged(self) -> bool:
        return self.master >= 0

    @property
    def slave_path(self) -> str:
        return os.ttyname(self._slave)

    def plug(self) -> None:
        """Point `link` at the line (atomically), creating a fresh pty if none is open.

        After `unplug(hang_up=False)` this puts the node of the same line back.
        """
        if not self.plugged:
            master, slave = os.openpty()
            tty.setraw(slave)  # no echo, no line discipline until the driver sets its own
            os.set_blocking(master, False)
            self.master, self._slave = master, slave
        temporary = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        temporary.symlink_to(os.ttyname(self._slave))
        temporary.replace(self.link)
        self.plugs += 1

    def unplug(self, *, hang_up: bool = True) -> None:
        """Remove the link; with `hang_up`, also close the line (as a pulled adapter does).

        `hang_up=False` only removes the node, leaving the open line working:
        what a driver can only notice by watching the node.
        """
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        if hang_up and self.plugged:
            for fd in (self.master, self._slave):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self.master = self._slave = -1

    def replug(self) -> None:
        self.unplug()
        self.plug()

    async def send(self, data: bytes, timeout: float = 5.0) -> None:
        """Write all of `data` to the line from the device end."""
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        async with asyncio.timeout(timeout):
            while view:
                try:
                    view = view[os.write(self.master, view) :]
                except BlockingIOError:
                    await self._writable(loop)

    async def _writable(self, loop: asyncio.AbstractEventLoop) -> None:
        ready: asyncio.Future[None] = loop.create_future()

        def release() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_writer(self.master, release)
        try:
            await ready
        finally:
            loop.remove_writer(self.master)

    def receive_nowait(self) -> bytes:
        """Whatever the driver has written so far (b"" when nothing)."""
        try:
            return os.read(self.master, 65536)
        except (BlockingIOError, OSError):
            return b""
