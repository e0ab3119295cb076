"""The server side of Modbus for the simulators: `DeviceModel`s served on a TCP
port, or as several unit ids on one serial port, so tests, the demo and the
benchmarks meet real Modbus frames (pymodbus's servers, pinned 3.11.4).

Out of the product path: the driver's side of the wire is
`cityedge.drivers.modbus.{tcp,rtu}`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.datastore.context import ModbusBaseDeviceContext
from pymodbus.framer import FramerRTU, FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from cityedge.drivers.modbus.budget import LineFormat
from cityedge.drivers.modbus.errors import ExceptionReply
from cityedge.drivers.modbus.points import RegisterKind
from cityedge.drivers.modbus.rtu import MAX_ADU, find_frame


class DeviceModel(Protocol):
    """What a simulated device gives the wire: its registers and its manners.

    `read`/`write` may raise `ExceptionReply` to answer with an exception code.
    Coils and discrete inputs travel as 0/1 integers. `reply` gets each
    response frame (Modbus TCP, MBAP header included) and returns the bytes to
    send: the frame, nothing (a silent device) or garbage; `reply_rtu` does
    the same for an RTU frame (unit id to CRC). An optional `write_delay` (s)
    holds back the answer to a write once it is applied.
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

    async def async_setValues(self, func_code: int, address: int, values: Any) -> Any:
        answer = self.setValues(func_code, address, values)
        delay = getattr(self.model, "write_delay", 0.0)  # applied now, answered late
        if delay:
            await asyncio.sleep(delay)
        return answer

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
