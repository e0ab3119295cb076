"""Our errors for everything that goes wrong on a Modbus link, each carrying the
`reason` the driver counts in health:

* `LinkTimeout` ("timeout") and `LinkDown` ("connection"): `DeviceUnreachable`;
* `BadReply` ("decode"): an answer that is not what was asked; transient too.
  On TCP also `ForeignReply` ("not-ours": another transaction's id); on a serial
  line also `CrcError` ("crc") and `TruncatedReply` ("truncated");
* `PortError` (from `serialline.port`): the serial port is gone or unusable;
  the driver counts it as "port";
* `ExceptionReply` ("exception-<code>"): the device said no: `DeviceRejected`;
* `WriteUnconfirmed`: a write sent whose answer never came back whole; raised
  only when a read-back could not show it applied (`DeviceUnreachable`).

pymodbus's exceptions are translated into these at the link's edge (`tcp`, `rtu`).
"""

from __future__ import annotations

from cityedge.sdk.model import DeviceError, DeviceRejected, DeviceUnreachable

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


class ForeignReply(BadReply):
    """A whole reply, but to another transaction (TCP: its transaction id, unit or
    protocol id is not the request's): a confused gateway or device."""

    reason = "not-ours"


class CrcError(BadReply):
    """A whole reply arrived, but its CRC does not match: noise on the line."""

    reason = "crc"


class TruncatedReply(BadReply):
    """Part of a reply arrived, then silence: bytes lost on the line."""

    reason = "truncated"


class WriteUnconfirmed(DeviceUnreachable):
    """A write went out and no proper answer came back (a timeout, a reply that was
    not ours, the connection lost): the device may have applied it. It is never
    sent again blindly; the driver reads the point back to tell (`writes.py`)."""

    reason = "unconfirmed"


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
