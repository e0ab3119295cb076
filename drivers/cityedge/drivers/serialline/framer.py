"""Bytes → lines, with a bound on line length and resync after garbage.

A line ends at CR or LF (so CRLF, LF and CR-only devices all work); empty
lines are skipped. A line longer than `max_line` is never buffered whole: the
framer drops what it has, counts one `overlong` line, and discards bytes until
the next end of line, where it is in step again. Memory is therefore bounded
by `max_line` whatever the device sends.
"""

from __future__ import annotations

_EOL = b"\r\n"


class LineFramer:
    """Feeds on arbitrary chunks of a byte stream, yields complete lines (without EOL)."""

    def __init__(self, max_line: int) -> None:
        if max_line < 1:
            raise ValueError(f"max_line must be at least 1, got {max_line}")
        self.max_line = max_line
        self.overlong = 0  # lines dropped for being too long
        self._buffer = bytearray()
        self._skipping = False  # inside an overlong line: drop until the next EOL

    def feed(self, data: bytes) -> list[bytes]:
        lines: list[bytes] = []
        start = 0
        end = len(data)
        while start < end:
            cut = _next_eol(data, start)
            if cut < 0:
                self._take(data[start:])
                break
            self._take(data[start:cut])
            if self._skipping:
                self._skipping = False  # the garbage line ended here: in step again
            elif self._buffer:
                lines.append(bytes(self._buffer))
            self._buffer.clear()
            start = cut + 1
        return lines

    def reset(self) -> None:
        """Forget a partial line (the port was reopened, or input was discarded)."""
        self._buffer.clear()
        self._skipping = False

    @property
    def pending(self) -> int:
        """Bytes of an incomplete line held (never more than max_line)."""
        return len(self._buffer)

    def _take(self, chunk: bytes) -> None:
        if self._skipping or not chunk:
            return
        if len(self._buffer) + len(chunk) > self.max_line:
            self.overlong += 1
            self._buffer.clear()
            self._skipping = True
            return
        self._buffer += chunk


def _next_eol(data: bytes, start: int) -> int:
    cr = data.find(_EOL[:1], start)
    lf = data.find(_EOL[1:], start)
    if cr < 0:
        return lf
    if lf < 0:
        return cr
    return min(cr, lf)
