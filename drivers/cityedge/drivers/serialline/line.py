"""A serial port that carries text lines (NMEA, ASCII request/response devices).

The line framer on top of `port.SerialPort`: bytes are cut into bounded lines
as they arrive and queued (at most `queue_lines`; the oldest is dropped and
reported when a reader falls behind), so a reader never loses a line to a
timeout of its own.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from cityedge.drivers.serialline.framer import LineFramer
from cityedge.drivers.serialline.port import PortLost, SerialPort
from cityedge.drivers.serialline.settings import SerialSection

DropHook = Callable[[str, str], None]
"""Called with (reason, detail) for every line dropped before a driver saw it."""


class SerialLine:
    """One serial port read as lines: open/close, bounded line reads, writes, loss."""

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
        self._port = SerialPort(path, baud, bytesize=bytesize, parity=parity, stopbits=stopbits,
                                check_interval=check_interval, on_bytes=self._on_bytes)  # fmt: skip
        self._framer = LineFramer(max_line)
        self._lines: deque[bytes] = deque()
        self._queue_lines = queue_lines
        self._on_dropped = on_dropped
        self.lines_in = 0
        self.overrun = 0  # lines dropped because nobody read them in time

    @classmethod
    def of(cls, section: SerialSection, on_dropped: DropHook | None = None) -> SerialLine:
        """The line a serial driver's config section describes."""
        return cls(section.port, section.baud, bytesize=section.bytesize, parity=section.parity,
                   stopbits=section.stopbits, max_line=section.max_line,
                   check_interval=section.check_interval, on_dropped=on_dropped)  # fmt: skip

    @property
    def path(self) -> str:
        return self._port.path

    @property
    def baud(self) -> int:
        return self._port.baud

    @property
    def is_open(self) -> bool:
        return self._port.is_open

    @property
    def lost(self) -> PortLost | None:
        """Why the open line died (until it is closed), else None."""
        return self._port.lost

    @property
    def bytes_in(self) -> int:
        return self._port.bytes_in

    @property
    def overlong(self) -> int:
        return self._framer.overlong

    def open(self) -> None:
        """Open the port (`PortUnavailable` says why not), with no stale partial line."""
        if self._port.is_open:
            return
        self._port.open()
        self._framer.reset()
        self._lines.clear()

    def close(self) -> None:
        """Close the port (idempotent); readers waiting get `PortLost`."""
        self._port.close()
        self._lines.clear()
        self._framer.reset()

    async def read_line(self, timeout: float) -> bytes:
        """The next complete line (without its CR/LF).

        Raises `TimeoutError` when none arrives in `timeout` seconds, and
        `PortLost` when the line is (or goes) away.
        """
        async with asyncio.timeout(timeout):
            while True:
                if self._lines:
                    return self._lines.popleft()
                self._port.check_alive()
                await self._port.wait()

    async def write(self, data: bytes, timeout: float) -> None:
        """Write all of `data`; `TimeoutError` if the line does not take it in time."""
        await self._port.write(data, timeout)

    def discard_input(self) -> int:
        """Drop queued lines and any partial line (late answers to an earlier request)."""
        dropped = len(self._lines)
        self._lines.clear()
        self._framer.reset()
        return dropped

    def _on_bytes(self, data: bytes) -> None:
        before = self._framer.overlong
        lines = self._framer.feed(data)
        # one report per line dropped, however the bytes were cut into reads: one
        # read may hold several overlong lines, or the next read the rest of one
        for _ in range(self._framer.overlong - before):
            self._dropped("overlong", f"line longer than {self._framer.max_line} bytes dropped")
        for line in lines:
            self.lines_in += 1
            if len(self._lines) >= self._queue_lines:
                self._lines.popleft()
                self.overrun += 1
                self._dropped("overrun", f"more than {self._queue_lines} lines unread")
            self._lines.append(line)

    def _dropped(self, reason: str, detail: str) -> None:
        if self._on_dropped is not None:
            self._on_dropped(reason, detail)
