"""LoRaWAN 1.0.x PHYPayloads: parse, check the MIC, decrypt, and build (for simulators).

Pure functions over bytes; no I/O. The layout (LoRaWAN 1.0.x §4):

    PHYPayload = MHDR(1) | MACPayload | MIC(4)
    MACPayload = FHDR | [FPort(1) | FRMPayload]
    FHDR       = DevAddr(4, little-endian) | FCtrl(1) | FCnt(2, little-endian) | FOpts(0..15)

The MIC is AES-CMAC(NwkSKey, B0 | MHDR..FRMPayload)[0:4]; FRMPayload is
AES-CTR-like: each 16-byte block XORed with AES-ECB(key, A_i). Both blocks carry
the direction, the DevAddr and the full 32-bit frame counter, of which only the
low 16 bits travel: `full_fcnt` rebuilds the rest from the last one accepted.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

MIN_DATA_FRAME: Final = 12  # MHDR + FHDR without FOpts + MIC
MAX_FRAME: Final = 255  # the radio's PHY limit
MAX_FCNT_GAP: Final = 16384  # LoRaWAN 1.0's MAX_FCNT_GAP
KEY_BYTES: Final = 16


class MType(IntEnum):
    JOIN_REQUEST = 0
    JOIN_ACCEPT = 1
    UNCONFIRMED_UP = 2
    UNCONFIRMED_DOWN = 3
    CONFIRMED_UP = 4
    CONFIRMED_DOWN = 5
    REJOIN_REQUEST = 6
    PROPRIETARY = 7


UPLINKS: Final = (MType.UNCONFIRMED_UP, MType.CONFIRMED_UP)


class FrameError(ValueError):
    """A frame that cannot be a LoRaWAN 1.0 uplink. `reason` is stable (counted in
    health and listed in docs/lorawan.md); `detail` says where."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True, slots=True)
class Uplink:
    mtype: MType
    dev_addr: int
    adr: bool
    adr_ack_req: bool
    ack: bool
    fcnt16: int
    fopts: bytes
    fport: int | None
    frm_payload: bytes  # still encrypted
    mic: bytes
    raw: bytes  # the whole PHYPayload, MIC included

    @property
    def dev_addr_hex(self) -> str:
        return f"{self.dev_addr:08X}"

    @property
    def confirmed(self) -> bool:
        return self.mtype is MType.CONFIRMED_UP


@dataclass(frozen=True, slots=True)
class JoinRequest:
    join_eui: str
    dev_eui: str
    dev_nonce: int
    mic: bytes
    raw: bytes


def mtype_of(data: bytes) -> MType:
    if not data:
        raise FrameError("too-short", "empty frame")
    return MType(data[0] >> 5)


def parse_uplink(data: bytes) -> Uplink:
    """A data uplink's fields; FrameError for anything else or anything malformed."""
    if len(data) > MAX_FRAME:
        raise FrameError("too-long", f"{len(data)} bytes; a LoRa PHYPayload has at most 255")
    if len(data) < MIN_DATA_FRAME:
        raise FrameError("too-short", f"{len(data)} bytes; a data frame has at least 12")
    mhdr = data[0]
    mtype = MType(mhdr >> 5)
    if mhdr & 0x03 != 0:
        raise FrameError("bad-major", f"MHDR {mhdr:#04x}: major version {mhdr & 3}, expected 0")
    if mtype not in UPLINKS:
        raise FrameError("not-uplink", f"MHDR {mhdr:#04x}: {mtype.name.lower()}")
    dev_addr, fctrl, fcnt16 = struct.unpack_from("<IBH", data, 1)
    fopts_len = fctrl & 0x0F
    end = len(data) - 4
    fhdr_end = 8 + fopts_len
    if fhdr_end > end:
        raise FrameError(
            "truncated", f"FOptsLen {fopts_len} runs past the MIC (frame of {len(data)} bytes)"
        )
    fopts = data[8:fhdr_end]
    fport: int | None = None
    payload = b""
    if fhdr_end < end:
        fport = data[fhdr_end]
        payload = data[fhdr_end + 1 : end]
        if fport == 0 and fopts_len:
            raise FrameError("fopts-with-port0", "MAC commands both in FOpts and on FPort 0")
    return Uplink(
        mtype=mtype,
        dev_addr=dev_addr,
        adr=bool(fctrl & 0x80),
        adr_ack_req=bool(fctrl & 0x40),
        ack=bool(fctrl & 0x20),
        fcnt16=fcnt16,
        fopts=fopts,
        fport=fport,
        frm_payload=payload,
        mic=data[end:],
        raw=data,
    )


def parse_join_request(data: bytes) -> JoinRequest:
    """The fields of a join request (counted; OTAA is not handled: docs/lorawan.md)."""
    if len(data) != 23 or mtype_of(data) is not MType.JOIN_REQUEST:
        raise FrameError("not-join-request", f"{len(data)} bytes, expected a 23-byte join request")
    join_eui = data[1:9][::-1].hex().upper()
    dev_eui = data[9:17][::-1].hex().upper()
    (nonce,) = struct.unpack_from("<H", data, 17)
    return JoinRequest(join_eui, dev_eui, nonce, data[19:], data)


def full_fcnt(fcnt16: int, last32: int | None, max_gap: int = MAX_FCNT_GAP) -> int:
    """The 32-bit counter whose low 16 bits are `fcnt16`, nearest above `last32`.

    A value at or below `last32` comes back as is, so the caller sees a replay.
    """
    if last32 is None:
        return fcnt16
    candidate = (last32 & 0xFFFF0000) | fcnt16
    if candidate <= last32 and last32 - candidate >= 0x10000 - max_gap:
        candidate += 0x10000  # the low half rolled over since the last frame
    return candidate & 0xFFFFFFFF


def _block(first: int, dev_addr: int, fcnt32: int, last: int, *, uplink: bool) -> bytes:
    return struct.pack("<B4xBIIxB", first, 0 if uplink else 1, dev_addr, fcnt32 & 0xFFFFFFFF, last)


def uplink_mic(nwk_skey: bytes, frame: bytes, dev_addr: int, fcnt32: int) -> bytes:
    """MIC of `frame` (MHDR..FRMPayload, without the MIC) as sent by the device."""
    b0 = _block(0x49, dev_addr, fcnt32, len(frame), uplink=True)
    mac = CMAC(algorithms.AES(nwk_skey))
    mac.update(b0 + frame)
    return mac.finalize()[:4]


def verify_mic(nwk_skey: bytes, uplink: Uplink, fcnt32: int) -> bool:
    expected = uplink_mic(nwk_skey, uplink.raw[:-4], uplink.dev_addr, fcnt32)
    return hmac.compare_digest(expected, uplink.mic)


def crypt_frm_payload(
    key: bytes, dev_addr: int, fcnt32: int, payload: bytes, *, uplink: bool = True
) -> bytes:
    """Encrypt or decrypt (the same operation) an FRMPayload."""
    if not payload:
        return b""
    blocks = b"".join(
        _block(0x01, dev_addr, fcnt32, i, uplink=uplink)
        for i in range(1, (len(payload) + 15) // 16 + 1)
    )
    # ECB on purpose: the spec's keystream is AES over counter blocks A_i.
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    stream = encryptor.update(blocks) + encryptor.finalize()
    return bytes(a ^ b for a, b in zip(payload, stream, strict=False))


def build_uplink(
    dev_addr: int,
    fcnt32: int,
    fport: int | None,
    payload: bytes,
    nwk_skey: bytes,
    app_skey: bytes,
    *,
    confirmed: bool = False,
    fopts: bytes = b"",
    adr: bool = False,
) -> bytes:
    """A device's uplink, encrypted and signed: what simulators and tests send."""
    if len(fopts) > 15:
        raise ValueError("FOpts holds at most 15 bytes")
    if fport is None and payload:
        raise ValueError("a payload needs an FPort")
    mtype = MType.CONFIRMED_UP if confirmed else MType.UNCONFIRMED_UP
    fctrl = (0x80 if adr else 0) | len(fopts)
    frame = struct.pack("<BIBH", mtype << 5, dev_addr, fctrl, fcnt32 & 0xFFFF) + fopts
    if fport is not None:
        key = nwk_skey if fport == 0 else app_skey
        frame += bytes([fport]) + crypt_frm_payload(key, dev_addr, fcnt32, payload)
    return frame + uplink_mic(nwk_skey, frame, dev_addr, fcnt32)
