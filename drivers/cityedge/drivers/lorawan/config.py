"""`[[drivers.lorawan]]`: the UDP port the cabinet's packet forwarder sends to, and
the sensors whose session keys this gateway holds.

Errors name the key path: `drivers.lorawan[0].port: should be less than or
equal to 65535, got 70000`; a missing or readable-by-others key file is reported
when the driver starts, with the file's name and the remedy.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated

from cityedge.sdk.driver import DriverSection
from cityedge.sdk.tables import Field, check

_EUI = re.compile(r"^[0-9A-Fa-f]{16}$")


class Section(DriverSection):
    # Loopback by default: the packet forwarder runs on the same box; GWMP has no
    # authentication, so listening further out needs `forwarders` below.
    listen: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 1700  # 0: any free port (tests)
    sessions: Path  # device keys, ABP and OTAA (TOML, mode 0600): docs/lorawan.md
    # The network's NetID (6 hex digits): its low 7 bits lead every DevAddr given to
    # an OTAA device that joins here. 000000/000001 are for private networks.
    net_id: str = Field(default="000000", pattern=r"^[0-9A-Fa-f]{6}$")
    device_types: list[Path] = Field(default_factory=list)  # folders besides config/lorawan/
    # The gateway EUIs allowed to send: in production, the cabinet's concentrator(s).
    # Empty (a bench, tests): the first `max_forwarders` EUIs heard, no others; `cityedge
    # check` warns.
    forwarders: list[str] = Field(default_factory=list)
    max_forwarders: Annotated[int, Field(ge=1, le=64)] = 8
    dedup_window: Annotated[float, Field(gt=0, le=5)] = 0.2  # copies of a frame arrive within
    silent_intervals: Annotated[float, Field(ge=1, le=1000)] = 3.0  # alarm after N intervals
    queue_size: Annotated[int, Field(ge=10, le=100_000)] = 2000  # frames between socket and decoder

    @check("listen")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError("expected an IP address to listen on, like 127.0.0.1 or ::1") from None
        return value

    @check("forwarders")
    @classmethod
    def _euis(cls, value: list[str]) -> list[str]:
        for eui in value:
            if not _EUI.match(eui):
                raise ValueError(
                    f"expected gateway EUIs of 16 hex digits, like AA555A0000000101; got {eui!r}"
                )
        return [eui.upper() for eui in value]
