"""What every Modbus link shares: `Link`, the base the driver polls through
(read and write, over each transport's own exchange), and the request and
reply PDUs (pymodbus's classes, pinned 3.11.4) both transports send and read.

pymodbus changes its API between minor versions (`slave=` became
`device_id=`; datastores moved), so the driver meets it here and in `tcp`,
`rtu` and nowhere else; the simulators meet its server side in
`cityedge.street.modbus_server`.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Sequence
from typing import Any

import pymodbus.pdu.bit_message as pdu_bit
import pymodbus.pdu.register_message as pdu_reg
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import DecodePDU

from cityedge.drivers.modbus.errors import BadReply, ExceptionReply
from cityedge.drivers.modbus.points import RegisterKind

# We translate and log every pymodbus failure ourselves (first loudly, the rest
# quietly); its own error lines would repeat each one on every poll.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


READ_REQUEST: dict[RegisterKind, Callable[..., Any]] = {
    RegisterKind.COIL: pdu_bit.ReadCoilsRequest,
    RegisterKind.DISCRETE: pdu_bit.ReadDiscreteInputsRequest,
    RegisterKind.INPUT: pdu_reg.ReadInputRegistersRequest,
    RegisterKind.HOLDING: pdu_reg.ReadHoldingRegistersRequest,
}


def write_request(
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


def decode_reply(pdu: bytes) -> Any:
    """A reply PDU as pymodbus reads it, or None if it does not decode."""
    try:
        return REPLY_DECODER.decode(pdu)
    except (ModbusException, IndexError, ValueError, struct.error):
        return None


REPLY_DECODER = DecodePDU(False)
REQUEST_DECODER = DecodePDU(True)


def values_of(response: Any, kind: RegisterKind, count: int, where: str) -> list[int]:
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


class Link:
    """One bus as the driver sees it (a TCP endpoint, a serial line): `read` and
    `write` as one request PDU and its checked reply, over the transport's
    `_exchange` (send one request, return its reply)."""

    @property
    def endpoint(self) -> str:
        raise NotImplementedError

    async def open(self, timeout: float) -> None:
        """Connect now if not connected (`LinkDown` or `PortError` if it cannot)."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def _exchange(self, request: Any, unit: int, what: str, timeout: float) -> Any:
        raise NotImplementedError

    def _not_ours(self) -> None:
        """A reply turned out not to be our answer (TCP forgets its connection, so a
        late answer cannot be taken for the next request's)."""

    async def read(
        self, kind: RegisterKind, address: int, count: int, *, unit: int, timeout: float
    ) -> list[int]:
        what = f"read {kind} {address}+{count} unit {unit}"
        request = READ_REQUEST[kind](address=address, count=count, dev_id=unit)
        reply = await self._exchange(request, unit, what, timeout)
        try:
            return values_of(reply, kind, count, f"{self.endpoint}: {what}")
        except BadReply:
            self._not_ours()
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
        request = write_request(kind, address, list(values), unit, multiple)
        reply = await self._exchange(request, unit, what, timeout)
        # every write reply echoes the address: anything else is not our answer
        if getattr(reply, "address", None) != address:
            self._not_ours()
            raise BadReply(f"{self.endpoint}: {what}: reply for address "
                           f"{getattr(reply, 'address', None)}")  # fmt: skip
