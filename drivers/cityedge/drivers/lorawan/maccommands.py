"""LoRaWAN 1.0.x MAC commands a device sends (in FOpts, or alone on FPort 0), and
the two answers the gateway gives (LoRaWAN 1.0.3 §5):

    LinkCheckReq   0x02  (no payload)  → LinkCheckAns  0x02 | Margin(1) | GwCnt(1)
    DeviceTimeReq  0x0D  (no payload)  → DeviceTimeAns 0x0D | GPS seconds(4, LE) | 1/256 s(1)

Margin is the uplink's SNR above the demodulation floor of its spreading factor
(dB, 0..254); GwCnt the number of forwarders that heard it. The other uplink
commands answer requests of a network server (LinkADRAns, DevStatusAns…); this
gateway sends none of those requests, so they are parsed and counted only. A
command id we do not know ends parsing: its length is unknown, and what follows
cannot be read (counted as `unknown`). Pure functions over bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

LINK_CHECK: Final = 0x02
DEVICE_TIME: Final = 0x0D

# uplink command id → (name, payload bytes)
UPLINK_COMMANDS: Final[dict[int, tuple[str, int]]] = {
    0x02: ("link-check-req", 0),
    0x03: ("link-adr-ans", 1),
    0x04: ("duty-cycle-ans", 0),
    0x05: ("rx-param-setup-ans", 1),
    0x06: ("dev-status-ans", 2),
    0x07: ("new-channel-ans", 1),
    0x08: ("rx-timing-setup-ans", 0),
    0x09: ("tx-param-setup-ans", 0),
    0x0A: ("dl-channel-ans", 1),
    0x0D: ("device-time-req", 0),
}

# SNR (dB) a LoRa demodulator needs at each spreading factor (SX1276 datasheet, as
# LoRaWAN network servers use it for LinkCheckAns)
DEMOD_FLOOR: Final = {5: -2.5, 6: -5.0, 7: -7.5, 8: -10.0, 9: -12.5, 10: -15.0, 11: -17.5,
                      12: -20.0}  # fmt: skip
GPS_EPOCH_UNIX: Final = 315_964_800  # 1980-01-06T00:00:00Z
LEAP_SECONDS: Final = 18  # GPS - UTC since 2017-01-01; none announced since


@dataclass(frozen=True, slots=True)
class MacCommand:
    cid: int
    name: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class MacCommands:
    commands: tuple[MacCommand, ...]
    unknown: int | None = None  # the first command id we could not read; parsing stopped
    truncated: str | None = None  # the command whose payload ran past the end


def parse_mac_commands(data: bytes) -> MacCommands:
    """The uplink MAC commands in `data` (FOpts, or a decrypted FPort 0 payload)."""
    out: list[MacCommand] = []
    at = 0
    while at < len(data):
        cid = data[at]
        known = UPLINK_COMMANDS.get(cid)
        if known is None:
            return MacCommands(tuple(out), unknown=cid)
        name, size = known
        if at + 1 + size > len(data):
            return MacCommands(tuple(out), truncated=name)
        out.append(MacCommand(cid, name, data[at + 1 : at + 1 + size]))
        at += 1 + size
    return MacCommands(tuple(out))


def link_check_ans(snr: float, spreading_factor: int | None, gateways: int) -> bytes:
    floor = DEMOD_FLOOR.get(spreading_factor or 0, DEMOD_FLOOR[12])
    margin = max(0, min(254, int(snr - floor)))
    return bytes([LINK_CHECK, margin, max(1, min(255, gateways))])


def device_time_ans(unix: float) -> bytes:
    gps = unix - GPS_EPOCH_UNIX + LEAP_SECONDS
    seconds = int(gps)
    fraction = min(255, int((gps - seconds) * 256))
    return bytes([DEVICE_TIME]) + struct.pack("<IB", seconds & 0xFFFFFFFF, fraction)


def gps_to_unix(seconds: int, fraction: int) -> float:
    """What a device makes of a DeviceTimeAns (for tests and simulators)."""
    return seconds + fraction / 256 + GPS_EPOCH_UNIX - LEAP_SECONDS
