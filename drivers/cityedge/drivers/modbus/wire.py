"""Every pymodbus call of the project, client and server side (pinned 3.11.4).

pymodbus changes its API between minor versions (`slave=` became
`device_id=`; datastores moved), so it is met here and nowhere else. Its
exceptions are translated at this edge into ours, each carrying the `reason`
the driver counts in health:

* `LinkTimeout` ("timeout") and `LinkDown` ("connection"): `DeviceUnreachable`;
* `BadReply` ("decode"): an answer that is not what was asked; transient too.
  On a serial line also `CrcError` ("crc") and `TruncatedReply` ("truncated");
* `PortError` ("port", from `line.py`): the serial port is gone or unusable;
* `ExceptionReply` ("exception-<code>"): the device said no: `DeviceRejected`.

Both transports use pymodbus for what a frame *is* (request and reply PDUs, the
RTU framer's CRC) and run the transaction themselves. On TCP, pymodbus's
client spent a task, a lock and a trace hook on every request (55 µs of CPU;
see `TcpLink`). On a serial line, our `SerialPort`: pymodbus's serial client
drops a frame with a bad CRC without a word (it would count as a timeout),
knows no inter-frame gap, and cannot say how long each transaction held the
line. See docs/modbus.md.

The server side serves `DeviceModel`s (our simulator) on a TCP port, or as
several unit ids on one serial port, so tests, the demo and the benchmark meet
real Modbus frames.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import pymodbus.pdu.bit_message as pdu_bit
import pymodbus.pdu.register_message as pdu_reg
from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.datastore.context import ModbusBaseDeviceContext
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerRTU, FramerType
from pymodbus.pdu import DecodePDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from cityedge.drivers.modbus.budget import LineFormat, LineMeter
from cityedge.drivers.modbus.line import SerialPort
from cityedge.drivers.modbus.points import RegisterKind
from cityedge.sdk.model import DeviceError, DeviceRejected, DeviceUnreachable

# We translate and log every pymodbus failure ourselves (first loudly, the rest
# quietly); its own error lines would repeat each one on every poll.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class LinkTimeout(DeviceUnreachable):
    reason = "timeout"


class LinkDown(DeviceUnreachable):
    reason = "connection"


class BadReply(DeviceUnreachable):
    """An answer that does not match the request (short, wrong function). Could
    be line noise, so worth a retry; the driver counts it as `decode`."""

    reason = "decode"


class CrcError(BadReply):
    """A whole reply arrived, but its CRC does not match: noise on the line."""

    reason = "crc"


class TruncatedReply(BadReply):
    """Part of a reply arrived, then silence: bytes lost on the line."""

    reason = "truncated"


class ExceptionReply(DeviceRejected):
    """A Modbus exception response. Raised by simulated devices too, to answer one."""

    def __init__(self, code: int, detail: str = "") -> None:
        self.code = code
        name = EXCEPTION_NAMES.get(code, "unknown exception")
        super().__init__(f"exception {code} ({name}){': ' + detail if detail else ''}")

    @property
    def reason(self) -> str:
        return f"exception-{self.code}"


def reason_of(exc: DeviceError) -> str:
    return str(getattr(exc, "reason", "error"))


# --- client -------------------------------------------------------------------------


class Link(Protocol):
    """One bus as the driver sees it: a TCP endpoint now, a serial line later."""

    @property
    def endpoint(self) -> str: ...

    async def open(self, timeout: float) -> None:
        """Connect now if not connected (LinkDown if it cannot)."""
        ...

    async def read(
        self, kind: RegisterKind, address: int, count: int, *, unit: int, timeout: float
    ) -> list[int]: ...

    async def write(
        self,
        kind: RegisterKind,
        address: int,
        values: Sequence[int],
        *,
        unit: int,
        timeout: float,
        multiple: bool = False,
    ) -> None: ...

    async def close(self) -> None: ...


_READ_REQUEST: dict[RegisterKind, Callable[..., Any]] = {
    RegisterKind.COIL: pdu_bit.ReadCoilsRequest,
    RegisterKind.DISCRETE: pdu_bit.ReadDiscreteInputsRequest,
    RegisterKind.INPUT: pdu_reg.ReadInputRegistersRequest,
    RegisterKind.HOLDING: pdu_reg.ReadHoldingRegistersRequest,
}


def _write_request(
    kind: RegisterKind, address: int, words: list[int], unit: int, multiple: bool
) -> Any:
    """The request PDU that writes `words` at `address` (one coil, one register, or
    several registers with function 16)."""
    if kind is RegisterKind.COIL:
        return pdu_bit.WriteSingleCoilRequest(address=address, bits=[bool(words[0])],
                                              dev_id=unit)  # fmt: skip
    if kind is RegisterKind.HOLDING and len(words) == 1 and not multiple:
        return pdu_reg.WriteSingleRegisterRequest(address=address, registers=words, dev_id=unit)
    if kind is RegisterKind.HOLDING:
        return pdu_reg.WriteMultipleRegistersRequest(address=address, registers=words,
                                                     dev_id=unit)  # fmt: skip
    raise ExceptionReply(1, f"{kind} is read-only")


def _decode_reply(pdu: bytes) -> Any:
    """A reply PDU as pymodbus reads it, or None if it does not decode."""
    try:
        return _REPLY_DECODER.decode(pdu)
    except (ModbusException, IndexError, ValueError, struct.error):
        return None


_MBAP_HEADER = 7  # transaction id, protocol 0, length, unit id
_MBAP_MAX_LENGTH = 254  # the length field counts the unit id and a PDU of <= 253 bytes


class _MbapStream(asyncio.Protocol):
    """One Modbus TCP connection's bytes, cut into MBAP frames (7-byte header, then
    the PDU); a frame nobody waits for (a reply that came too late) is dropped."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[bytes] | None = None
        self.lost = False
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= _MBAP_HEADER:
            length = int.from_bytes(self._buffer[4:6], "big")  # unit id + PDU
            if not 2 <= length <= _MBAP_MAX_LENGTH:
                self._fail(BadReply(f"MBAP length {length} in {bytes(self._buffer[:8]).hex()}"))
                return
            end = 6 + length
            if len(self._buffer) < end:
                return
            frame = bytes(self._buffer[:end])
            del self._buffer[:end]
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(LinkDown(f"connection lost ({exc or 'closed by the device'})"))

    def _fail(self, exc: DeviceUnreachable) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


class TcpLink:
    """One Modbus TCP endpoint (a device, or a gateway serving several units).

    pymodbus says what a request and a reply *are* (its PDU classes, as on RTU);
    the transaction is ours: an MBAP header, one request at a time, its reply
    matched by transaction id. Its client did the same with a task, a lock and
    a trace hook per request: 175 against 120 µs of CPU per read, 0.55 % of a
    core at 100 requests/s (docs/modbus.md). Connects lazily, with a
    timeout; after a timeout or a bad reply it drops the connection, so a late
    answer can never be taken for the next one.
    """

    def __init__(self, host: str, port: int, *, timeout: float = 3.0) -> None:
        self.host = host
        self.port = port
        self._timeout = timeout
        self._stream: _MbapStream | None = None
        self._tid = 0

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    async def open(self, timeout: float) -> None:
        await self._connected(timeout)

    async def _connected(self, timeout: float) -> _MbapStream:
        if self._stream is not None and not self._stream.lost:
            return self._stream
        self._drop()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, stream = await loop.create_connection(_MbapStream, self.host, self.port)
        except (TimeoutError, OSError):
            raise LinkDown(f"{self.endpoint}: cannot connect") from None
        self._stream = stream
        return stream

    def _drop(self) -> None:
        if self._stream is not None:
            if self._stream.transport is not None:
                self._stream.transport.close()
            self._stream = None

    async def _exchange(self, request: Any, unit: int, what: str, timeout: float) -> Any:
        """Send one request and return its reply PDU; every failure one of our errors."""
        stream = await self._connected(timeout)
        try:
            body = request.encode()
        except (ModbusException, ValueError, struct.error) as exc:
            raise ExceptionReply(3, f"{what}: cannot be framed: {exc}") from None
        self._tid = (self._tid + 1) & 0xFFFF
        header = struct.pack(">HHHBB", self._tid, 0, len(body) + 2, unit, request.function_code)
        stream.waiter = asyncio.get_running_loop().create_future()
        assert stream.transport is not None
        stream.transport.write(header + body)
        try:
            async with asyncio.timeout(timeout):
                frame = await stream.waiter
        except TimeoutError:
            self._drop()
            raise LinkTimeout(
                f"{self.endpoint}: no answer to {what} within {timeout:g} s"
            ) from None
        except DeviceUnreachable as exc:
            self._drop()
            raise type(exc)(f"{self.endpoint}: {what}: {exc}") from None
        except asyncio.CancelledError:
            self._drop()  # its reply may still come: it must not answer the next request
            raise
        finally:
            stream.waiter = None
        tid, protocol, _, answered_by = struct.unpack_from(">HHHB", frame)
        function = frame[7]
        reply = _decode_reply(frame[7:]) if function & 0x7F == request.function_code else None
        if tid != self._tid or protocol != 0 or answered_by != unit or reply is None:
            self._drop()
            raise BadReply(f"{self.endpoint}: {what}: not our answer: {frame[:12].hex()}")
        if reply.isError():
            raise ExceptionReply(int(reply.exception_code), f"{self.endpoint} {what}")
        return reply

    async def read(
        self, kind: RegisterKind, address: int, count: int, *, unit: int, timeout: float
    ) -> list[int]:
        what = f"read {kind} {address}+{count} unit {unit}"
        request = _READ_REQUEST[kind](address=address, count=count, dev_id=unit)
        reply = await self._exchange(request, unit, what, timeout)
        try:
            return _values_of(reply, kind, count, f"{self.endpoint}: {what}")
        except BadReply:
            self._drop()
            raise

    async def write(
        self,
        kind: RegisterKind,
        address: int,
        values: Sequence[int],
        *,
        unit: int,
        timeout: float,
        multiple: bool = False,
    ) -> None:
        what = f"write {kind} {address}={list(values)} unit {unit}"
        request = _write_request(kind, address, list(values), unit, multiple)
        reply = await self._exchange(request, unit, what, timeout)
        # every write reply echoes the address: anything else is not our answer
        if getattr(reply, "address", None) != address:
            self._drop()
            raise BadReply(f"{self.endpoint}: {what}: reply for address "
                           f"{getattr(reply, 'address', None)}")  # fmt: skip

    async def close(self) -> None:
        self._drop()


def _values_of(response: Any, kind: RegisterKind, count: int, where: str) -> list[int]:
    """The `count` values a read reply carries; `BadReply` if it carries others."""
    values = getattr(response, "bits" if kind.is_bit else "registers", None)
    # bits arrive padded to a whole byte; registers must match exactly
    if (
        not isinstance(values, list)
        or len(values) < count
        or (not kind.is_bit and len(values) != count)
    ):
        got = len(values) if isinstance(values, list) else "nothing"
        raise BadReply(f"{where}: got {got} values")
    return [int(v) for v in values[:count]]


# --- Modbus RTU: frames ---------------------------------------------------------------

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
    decoder = _REPLY_DECODER if replies else _REQUEST_DECODER
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


_REPLY_DECODER = DecodePDU(False)
_REQUEST_DECODER = DecodePDU(True)


class _ResyncFramer(FramerRTU):
    """pymodbus's RTU framer for the simulated devices, resynchronising like a
    real slave: its own hunt waits for a phantom long frame after one corrupted
    request and leaves the server deaf for dozens of requests."""

    def decode(self, data: bytes) -> tuple[int, int, int, bytes]:
        found = find_frame(data, replies=False)
        if found is not None:
            start, end = found
            return end, data[start], 0, data[start + 1 : end - 2]
        if len(data) > MAX_ADU:  # no frame can start this far back: drop the noise
            return len(data) - MAX_ADU, 0, 0, self.EMPTY
        return 0, 0, 0, self.EMPTY


# --- Modbus RTU: the master's side ----------------------------------------------------

QUIET_FLOOR = 0.02
"""Seconds a reply with a bad CRC is given to turn out to be noise followed by
a good frame. USB serial adapters deliver bytes in chunks up to ~16 ms apart,
so the line's own 3.5-character gap is too short to tell."""


class RtuLink:
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
        self.port = SerialPort(path, line)
        self.line = line
        self.gap = line.standard_gap if gap is None else gap
        self.meter = meter or LineMeter()
        self.stray = 0  # bytes that arrived unasked, dropped before a request
        self._framer = FramerRTU(_REPLY_DECODER)
        self._quiet_until = 0.0  # loop time

    @property
    def endpoint(self) -> str:
        return self.port.path

    @property
    def is_open(self) -> bool:
        return self.port.is_open

    async def open(self, timeout: float) -> None:
        """Open the port if it is not (`PortError` if it cannot be)."""
        if not self.port.is_open:
            self.port.open()

    async def close(self) -> None:
        self.port.close()

    async def read(
        self, kind: RegisterKind, address: int, count: int, *, unit: int, timeout: float
    ) -> list[int]:
        what = f"read {kind} {address}+{count} unit {unit}"
        request = _READ_REQUEST[kind](address=address, count=count, dev_id=unit)
        reply = await self._exchange(request, unit, what, timeout)
        return _values_of(reply, kind, count, f"{self.endpoint}: {what}")

    async def write(
        self,
        kind: RegisterKind,
        address: int,
        values: Sequence[int],
        *,
        unit: int,
        timeout: float,
        multiple: bool = False,
    ) -> None:
        what = f"write {kind} {address}={list(values)} unit {unit}"
        request = _write_request(kind, address, list(values), unit, multiple)
        reply = await self._exchange(request, unit, what, timeout)
        if getattr(reply, "address", None) != address:
            raise BadReply(f"{self.endpoint}: {what}: reply for address "
                           f"{getattr(reply, 'address', None)}")  # fmt: skip

    async def _exchange(self, request: Any, unit: int, what: str, timeout: float) -> Any:
        """Send one request and return its reply PDU; every failure one of our errors."""
        loop = asyncio.get_running_loop()
        self.port.check()
        quiet = self._quiet_until - loop.time()
        if quiet > 0:
            await asyncio.sleep(quiet)
        self.stray += self.port.discard()
        try:
            frame = self._framer.buildFrame(request)
        except (ModbusException, ValueError, struct.error) as exc:
            raise ExceptionReply(3, f"{what}: cannot be framed: {exc}") from None
        expected = 1 + int(request.get_response_pdu_size()) + 2
        received = bytearray()
        started = loop.time()
        try:
            await self.port.send(frame, timeout)
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
            chunk = await self.port.receive(deadline if settle is None else min(deadline, settle))
            received += chunk
            found = find_frame(received)
            if found is not None:
                start, end = found
                self.stray += len(received) - (end - start)  # noise around the frame
                if received[start] != unit or received[start + 1] & 0x7F != function:
                    raise BadReply(f"answered by unit {received[start]} "
                                   f"function {received[start + 1]}")  # fmt: skip
                reply = _decode_reply(bytes(received[start + 1 : end - 2]))
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


# --- server (simulated devices) -----------------------------------------------------


class DeviceModel(Protocol):
    """What a simulated device gives the wire: its registers and its manners.

    `read`/`write` may raise `ExceptionReply` to answer with an exception code.
    Coils and discrete inputs travel as 0/1 integers. `reply` gets each
    response frame (Modbus TCP, MBAP header included) and returns the bytes to
    send: the frame, nothing (a silent device) or garbage; `reply_rtu` does
    the same for an RTU frame (unit id to CRC).
    """

    unit: int

    def read(self, kind: RegisterKind, address: int, count: int) -> list[int]: ...

    def write(self, kind: RegisterKind, address: int, values: list[int]) -> None: ...

    def reply(self, frame: bytes) -> bytes: ...

    def reply_rtu(self, frame: bytes) -> bytes: ...


_READ_KIND = {
    1: RegisterKind.COIL,
    2: RegisterKind.DISCRETE,
    3: RegisterKind.HOLDING,
    4: RegisterKind.INPUT,
}
_WRITE_KIND = {5: RegisterKind.COIL, 15: RegisterKind.COIL, 6: RegisterKind.HOLDING,
               16: RegisterKind.HOLDING}  # fmt: skip


class _ModelContext(ModbusBaseDeviceContext):
    """pymodbus's datastore interface over our DeviceModel (no 64k-entry tables)."""

    def __init__(self, model: DeviceModel) -> None:
        self.model = model
        self._echo: list[int] | list[bool] = []

    def reset(self) -> None:
        """Nothing to reset: the model owns its state."""

    def getValues(self, func_code: int, address: int, count: int = 1) -> Any:
        if func_code in (5, 6):  # the echo of a single write, not a read
            return self._echo
        kind = _READ_KIND.get(func_code)
        if kind is None:
            return ExcCodes.ILLEGAL_FUNCTION
        try:
            values = self.model.read(kind, address, count)
        except ExceptionReply as exc:
            return ExcCodes(exc.code)
        return [bool(v) for v in values] if kind.is_bit else values

    def setValues(self, func_code: int, address: int, values: Any) -> Any:
        kind = _WRITE_KIND.get(func_code)
        if kind is None:
            return ExcCodes.ILLEGAL_FUNCTION
        self._echo = values
        try:
            self.model.write(kind, address, [int(v) for v in values])
        except ExceptionReply as exc:
            return ExcCodes(exc.code)
        return None


class DeviceServer:
    """A `DeviceModel` answering Modbus TCP on host:port (port 0: any free one)."""

    def __init__(self, server: ModbusTcpServer, host: str, port: int) -> None:
        self._server = server
        self.host = host
        self.port = port

    @classmethod
    async def start(
        cls, model: DeviceModel, host: str = "127.0.0.1", port: int = 0
    ) -> DeviceServer:
        devices = {model.unit: _ModelContext(model)}
        context = ModbusServerContext(devices=devices, single=False)  # type: ignore[no-untyped-call]

        def trace(sending: bool, frame: bytes) -> bytes:
            return model.reply(frame) if sending else frame

        server = ModbusTcpServer(context, address=(host, port), trace_packet=trace)
        try:
            async with asyncio.timeout(5):
                await server.serve_forever(background=True)
        except (RuntimeError, TimeoutError) as exc:
            await server.shutdown()  # type: ignore[no-untyped-call]
            raise OSError(f"cannot listen on {host}:{port}: {exc}") from None
        listener: Any = server.transport  # an asyncio.Server while listening
        sockets = listener.sockets if listener is not None else []
        bound = int(sockets[0].getsockname()[1]) if sockets else port
        return cls(server, host, bound)

    async def stop(self) -> None:
        """Stop listening and drop every client connection (a device switched off)."""
        await self._server.shutdown()  # type: ignore[no-untyped-call]


class SerialDeviceServer:
    """Several `DeviceModel`s answering Modbus RTU on one serial port, each by its unit.

    A multi-drop bus as the master sees it: requests for units that nobody
    here has go unanswered (the master times out), like on a real line.
    """

    def __init__(self, server: ModbusSerialServer, path: str) -> None:
        self._server = server
        self.path = path

    @classmethod
    async def start(
        cls, models: Sequence[DeviceModel], path: str, line: LineFormat
    ) -> SerialDeviceServer:
        by_unit = {model.unit: model for model in models}
        devices = {unit: _ModelContext(model) for unit, model in by_unit.items()}
        context = ModbusServerContext(devices=devices, single=False)  # type: ignore[no-untyped-call]

        def trace(sending: bool, frame: bytes) -> bytes:
            model = by_unit.get(frame[0]) if sending and frame else None
            return model.reply_rtu(frame) if model is not None else frame

        server = ModbusSerialServer(
            context,
            framer=FramerType.RTU,
            port=path,
            baudrate=line.baudrate,
            bytesize=line.bytesize,
            parity=line.parity,
            stopbits=line.stopbits,
            ignore_missing_devices=True,
            trace_packet=trace,
        )
        server.framer = _ResyncFramer  # each connection builds its framer from this class
        try:
            async with asyncio.timeout(5):
                await server.serve_forever(background=True)
        except (RuntimeError, TimeoutError) as exc:
            await server.shutdown()  # type: ignore[no-untyped-call]
            raise OSError(f"cannot serve on {path}: {exc}") from None
        return cls(server, path)

    async def stop(self) -> None:
        """Close the port (the devices fall silent)."""
        await self._server.shutdown()  # type: ignore[no-untyped-call]
