"""Modbus RTU, the master's side: frames with their timing and CRC, on the shared
serial transport (`cityedge.drivers.serialline.port`).

Why not pymodbus's serial client: it drops a frame with a bad CRC without a
word (it would count as a timeout, hiding a noisy line), knows no inter-frame
gap, and cannot say how long each transaction held the line. So pymodbus says
what a frame *is* (PDUs, the RTU CRC, frame sizes) and `RtuLink` runs the
transaction. See docs/modbus.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Any

from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerRTU

from cityedge.drivers.modbus.budget import LineFormat, LineMeter
from cityedge.drivers.modbus.errors import (
    BadReply,
    CrcError,
    ExceptionReply,
    LinkTimeout,
    TruncatedReply,
)
from cityedge.drivers.modbus.link import REPLY_DECODER, REQUEST_DECODER, Link, decode_reply
from cityedge.drivers.serialline.port import SerialPort

MAX_BUFFERED = 4096  # bytes kept unread; a flood of noise beyond this is dropped (and counted)

MAX_ADU = 256  # the longest RTU frame the spec allows
_MIN_ADU = 4  # unit, function, CRC


def rtu_crc(body: bytes) -> bytes:
    """The two CRC bytes that end an RTU frame of `body` (unit id onwards)."""
    return int(FramerRTU.compute_CRC(body)).to_bytes(2, "big")


def find_frame(data: bytes | bytearray, *, replies: bool = True) -> tuple[int, int] | None:
    """(start, end) of the first whole frame with a good CRC in `data`, else None.

    Frame sizes come from pymodbus's PDU classes (`replies` or requests). Bytes
    before the frame are noise: skipping them is how a framer resynchronises
    after garbage, wherever in the buffer the next good frame starts.
    """
    decoder = REPLY_DECODER if replies else REQUEST_DECODER
    view = bytes(data)
    for start in range(len(view) - _MIN_ADU + 1):
        try:
            pdu_class = decoder.lookupPduClass(view[start:])
            size = int(pdu_class.calculateRtuFrameSize(view[start:])) if pdu_class else 0
        except (ModbusException, IndexError, ValueError, struct.error):
            continue
        end = start + size
        if size < _MIN_ADU or end > len(view):
            continue
        if view[end - 2 : end] == rtu_crc(view[start : end - 2]):
            return start, end
    return None


QUIET_FLOOR = 0.02
"""Seconds a reply with a bad CRC is given to turn out to be noise followed by
a good frame. USB serial adapters deliver bytes in chunks up to ~16 ms apart,
so the line's own 3.5-character gap is too short to tell."""


class RtuLink(Link):
    """One RS-485 line as the driver's `Link`: one transaction at a time.

    Before each request the line must have been quiet for `gap` seconds after
    the last frame (the spec's 3.5 characters); bytes that arrived meanwhile
    (a late reply, noise) are dropped and counted in `stray`. The reply
    timeout runs from when the request has left the wire. Every attempt is
    recorded in `meter` with the time it held the line.
    """

    def __init__(
        self,
        path: str,
        line: LineFormat,
        *,
        gap: float | None = None,
        meter: LineMeter | None = None,
    ) -> None:
        self.port = SerialPort(path, line.baudrate, bytesize=line.bytesize, parity=line.parity,
                               stopbits=line.stopbits, on_bytes=self._on_bytes)  # fmt: skip
        self.line = line
        self._buffer = bytearray()  # bytes arrived and not taken yet
        self.overflow = 0  # bytes dropped because nobody took them
        self.gap = line.standard_gap if gap is None else gap
        self.meter = meter or LineMeter()
        self.stray = 0  # bytes that arrived unasked, dropped before a request
        self._framer = FramerRTU(REPLY_DECODER)
        self._quiet_until = 0.0  # loop time

    @property
    def endpoint(self) -> str:
        return self.port.path

    @property
    def is_open(self) -> bool:
        """Open and not lost: a lost port has to be closed and opened again."""
        return self.port.is_open and self.port.lost is None

    async def open(self, timeout: float) -> None:
        """Open the port if it is not (`PortError` if it cannot be)."""
        if self.is_open:
            return
        self.port.close()  # a lost port is reopened from scratch
        self.port.open()
        self._buffer.clear()

    async def close(self) -> None:
        self.port.close()
        self._buffer.clear()

    async def _exchange(self, request: Any, unit: int, what: str, timeout: float) -> Any:
        """Send one request and return its reply PDU; every failure one of our errors."""
        loop = asyncio.get_running_loop()
        self.port.check()
        quiet = self._quiet_until - loop.time()
        if quiet > 0:
            await asyncio.sleep(quiet)
        self.stray += len(self._buffer)
        self._buffer.clear()
        try:
            frame = self._framer.buildFrame(request)
        except (ModbusException, ValueError, struct.error) as exc:
            raise ExceptionReply(3, f"{what}: cannot be framed: {exc}") from None
        expected = 1 + int(request.get_response_pdu_size()) + 2
        received = bytearray()
        started = loop.time()
        try:
            await self._send(frame, timeout)
            deadline = loop.time() + self.line.wire_time(len(frame)) + timeout
            reply = await self._reply(request.function_code, unit, expected, deadline, received)
        except LinkTimeout:
            raise LinkTimeout(
                f"{self.endpoint}: no answer to {what} within {timeout:g} s"
            ) from None
        except BadReply as exc:
            raise type(exc)(f"{self.endpoint}: {what}: {exc}") from None
        finally:
            ended = loop.time()
            self._quiet_until = ended + self.gap
            self.meter.record(ended - started + self.gap, len(frame), len(received))
        if reply.isError():
            raise ExceptionReply(int(reply.exception_code), f"{self.endpoint} {what}")
        return reply

    async def _reply(
        self, function: int, unit: int, expected: int, deadline: float, received: bytearray
    ) -> Any:
        """Collect bytes until a good frame is among them, or say why there is none."""
        loop = asyncio.get_running_loop()
        settle: float | None = None  # give up on a bad full-length frame at this time
        while True:
            chunk = await self._receive(deadline if settle is None else min(deadline, settle))
            received += chunk
            found = find_frame(received)
            if found is not None:
                start, end = found
                self.stray += len(received) - (end - start)  # noise around the frame
                if received[start] != unit or received[start + 1] & 0x7F != function:
                    raise BadReply(f"answered by unit {received[start]} "
                                   f"function {received[start + 1]}")  # fmt: skip
                reply = decode_reply(bytes(received[start + 1 : end - 2]))
                if reply is None:
                    raise BadReply(f"reply does not decode: {received[start:end].hex()}")
                return reply
            now = loop.time()
            need = 5 if len(received) > 1 and received[1] == function | 0x80 else expected
            if chunk:
                if len(received) > MAX_ADU + expected:
                    raise CrcError(f"{len(received)} bytes of noise, no frame")
                if len(received) >= need:
                    settle = now + max(self.gap, QUIET_FLOOR)
                continue
            if not received:
                raise LinkTimeout("no answer")
            if len(received) >= need:
                raise CrcError(f"{len(received)} bytes, CRC does not match")
            if now >= deadline:
                raise TruncatedReply(f"{len(received)} of {need} bytes, then silence")

    # --- bytes on the shared port -------------------------------------------------

    def _on_bytes(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > MAX_BUFFERED:
            excess = len(self._buffer) - MAX_BUFFERED
            del self._buffer[:excess]
            self.overflow += excess

    async def _receive(self, deadline: float) -> bytes:
        """The bytes that arrived (waiting for some until `deadline`, loop time).

        Returns b"" at the deadline; raises `PortError` when the line is lost.
        """
        loop = asyncio.get_running_loop()
        while not self._buffer:
            self.port.check_alive()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return b""
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self.port.wait()
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    async def _send(self, frame: bytes, timeout: float) -> None:
        """Write a request; a line that takes no bytes in time is as good as lost."""
        try:
            await self.port.write(frame, timeout)
        except TimeoutError:
            raise self.port.lose("stalled", f"line took no bytes for {timeout:g} s") from None
