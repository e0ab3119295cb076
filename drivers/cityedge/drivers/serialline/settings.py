"""Config keys every serial driver section has: where the port is and how it is framed.

`SerialSection` is a `DriverSection` the NMEA and ASCII sections extend, so a
bad baud rate or an empty port is reported at the same key path for both
(`drivers.nmea[0].baud: ...`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from cityedge.sdk.driver import DriverSection
from cityedge.sdk.tables import Field, check, check_table

STANDARD_BAUDS = (300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400,
                  460800, 921600)  # fmt: skip
"""Rates every UART and USB adapter we meet supports; anything else is a typo."""

Seconds = Annotated[float, Field(gt=0, le=3600)]


class SerialSection(DriverSection):
    port: str = Field(min_length=1, max_length=255)
    baud: int = 9600
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    max_line: Annotated[int, Field(ge=16, le=65536)] = 1024  # longer lines are dropped
    check_interval: Seconds = 1.0  # how often to check the device node is still there
    reopen_min: Seconds = 0.5  # first wait before reopening a lost port (doubles)
    reopen_max: Seconds = 30.0  # longest wait between reopen attempts

    @check("port")
    @classmethod
    def _port(cls, value: str) -> str:
        if not value.startswith("/") or value.endswith("/") or "\x00" in value:
            raise ValueError(
                "expected the absolute path of a serial device, like /dev/ttyUSB0 "
                "or /dev/serial/by-id/usb-…"
            )
        return value

    @check("baud")
    @classmethod
    def _baud(cls, value: int) -> int:
        if value not in STANDARD_BAUDS:
            rates = ", ".join(map(str, STANDARD_BAUDS))
            raise ValueError(f"expected a standard baud rate ({rates})")
        return value

    @check_table
    def _reopen(self) -> None:
        if self.reopen_min > self.reopen_max:
            raise ValueError(f"reopen_min ({self.reopen_min}) is greater than reopen_max "
                             f"({self.reopen_max})")  # fmt: skip
