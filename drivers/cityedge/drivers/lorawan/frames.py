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
DOWNLINKS: Final = (MType.UNCONFIRMED_DOWN, MType.CONFIRMED_DOWN)


class FrameError(ValueError):
    """A frame that cannot be a LoRaWAN 1.0 uplink. `reason` is stable (counted in
    health and listed in docs/lorawan.md); `detail` says where."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True, slots=True)
class Uplink:
    """A parsed data frame: an uplink, or a downlink read back (`parse_downlink`)."""

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
    return _parse_data(data, UPLINKS, "not-uplink")


def parse_downlink(data: bytes) -> Uplink:
    """A data downlink's fields (what a device reads; for simulators and tests)."""
    return _parse_data(data, DOWNLINKS, "not-downlink")


def _parse_data(data: bytes, mtypes: tuple[MType, ...], refusal: str) -> Uplink:
    if len(data) > MAX_FRAME:
        raise FrameError("too-long", f"{len(data)} bytes; a LoRa PHYPayload has at most 255")
    if len(data) < MIN_DATA_FRAME:
        raise FrameError("too-short", f"{len(data)} bytes; a data frame has at least 12")
    mhdr = data[0]
    mtype = MType(mhdr >> 5)
    if mhdr & 0x03 != 0:
        raise FrameError("bad-major", f"MHDR {mhdr:#04x}: major version {mhdr & 3}, expected 0")
    if mtype not in mtypes:
        raise FrameError(refusal, f"MHDR {mhdr:#04x}: {mtype.name.lower()}")
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
    """The fields of a join request; its MIC is checked by `verify_join_request`."""
    if len(data) != JOIN_REQUEST_BYTES or mtype_of(data) is not MType.JOIN_REQUEST:
        raise FrameError("not-join-request", f"{len(data)} bytes, expected a 23-byte join request")
    if data[0] & 0x03 != 0:
        raise FrameError(
            "bad-major", f"MHDR {data[0]:#04x}: major version {data[0] & 3}, expected 0"
        )
    join_eui = data[1:9][::-1].hex().upper()
    dev_eui = data[9:17][::-1].hex().upper()
    (nonce,) = struct.unpack_from("<H", data, 17)
    return JoinRequest(join_eui, dev_eui, nonce, data[19:], data)


# --- OTAA (LoRaWAN 1.0.x §6.2) ------------------------------------------------------------
#
#   JoinRequest = MHDR | JoinEUI(8, LE) | DevEUI(8, LE) | DevNonce(2, LE) | MIC(4)
#   JoinAccept  = MHDR | E(AppNonce(3) | NetID(3) | DevAddr(4) | DLSettings | RxDelay
#                        | [CFList(16)] | MIC(4))
#
# Both MICs are AES-CMAC(AppKey, MHDR..)[0:4]. The network *decrypts* (AES-ECB) the
# accept so that a device needs only AES encryption to read it. Session keys are
# AES(AppKey, 0x01 or 0x02 | AppNonce | NetID | DevNonce | zero padding).

JOIN_REQUEST_BYTES: Final = 23


@dataclass(frozen=True, slots=True)
class JoinAccept:
    app_nonce: int  # 24 bits
    net_id: int  # 24 bits
    dev_addr: int
    dl_settings: int = 0  # RX1DROffset (bits 6-4), RX2 data rate (bits 3-0)
    rx_delay: int = 1  # s before RX1; 0 means 1
    cflist: bytes = b""  # 16 bytes of extra channels, or none


def _cmac(key: bytes, data: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()[:4]


def _aes_ecb(key: bytes, data: bytes, *, decrypt: bool = False) -> bytes:
    # ECB on purpose: the spec applies the block cipher to each 16-byte block.
    cipher = Cipher(algorithms.AES(key), modes.ECB())
    op = cipher.decryptor() if decrypt else cipher.encryptor()
    return op.update(data) + op.finalize()


def verify_join_request(app_key: bytes, request: JoinRequest) -> bool:
    return hmac.compare_digest(_cmac(app_key, request.raw[:-4]), request.mic)


def build_join_request(join_eui: str, dev_eui: str, dev_nonce: int, app_key: bytes) -> bytes:
    """A device's join request (EUIs as printed, big-endian hex): for simulators."""
    frame = (
        bytes([MType.JOIN_REQUEST << 5])
        + bytes.fromhex(join_eui)[::-1]
        + bytes.fromhex(dev_eui)[::-1]
        + struct.pack("<H", dev_nonce)
    )
    return frame + _cmac(app_key, frame)


def _accept_fields(accept: JoinAccept) -> bytes:
    if len(accept.cflist) not in (0, 16):
        raise ValueError("a CFList has 16 bytes")
    return (
        accept.app_nonce.to_bytes(3, "little")
        + accept.net_id.to_bytes(3, "little")
        + struct.pack("<IBB", accept.dev_addr, accept.dl_settings, accept.rx_delay)
        + accept.cflist
    )


def build_join_accept(app_key: bytes, accept: JoinAccept) -> bytes:
    """The network's answer to a join request, signed and encrypted under the AppKey."""
    mhdr = bytes([MType.JOIN_ACCEPT << 5])
    body = _accept_fields(accept)
    return mhdr + _aes_ecb(app_key, body + _cmac(app_key, mhdr + body), decrypt=True)


def open_join_accept(app_key: bytes, data: bytes) -> JoinAccept:
    """What a device does with a join accept: decrypt, check the MIC, read the fields."""
    if len(data) not in (17, 33) or mtype_of(data) is not MType.JOIN_ACCEPT:
        raise FrameError("not-join-accept", f"{len(data)} bytes, expected a 17- or 33-byte accept")
    plain = _aes_ecb(app_key, data[1:])
    body, mic = plain[:-4], plain[-4:]
    if not hmac.compare_digest(_cmac(app_key, data[:1] + body), mic):
        raise FrameError("bad-mic", "join accept MIC does not verify under this AppKey")
    dev_addr, dl_settings, rx_delay = struct.unpack_from("<IBB", body, 6)
    return JoinAccept(
        app_nonce=int.from_bytes(body[0:3], "little"),
        net_id=int.from_bytes(body[3:6], "little"),
        dev_addr=dev_addr,
        dl_settings=dl_settings,
        rx_delay=rx_delay,
        cflist=body[12:],
    )


def derive_session_keys(
    app_key: bytes, app_nonce: int, net_id: int, dev_nonce: int
) -> tuple[bytes, bytes]:
    """(NwkSKey, AppSKey) of the session a join opened."""
    tail = app_nonce.to_bytes(3, "little") + net_id.to_bytes(3, "little")
    tail += struct.pack("<H", dev_nonce)
    blocks = b"".join(bytes([kind]) + tail + bytes(7) for kind in (0x01, 0x02))
    keys = _aes_ecb(app_key, blocks)
    return keys[:16], keys[16:]


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


def data_mic(nwk_skey: bytes, frame: bytes, dev_addr: int, fcnt32: int, *, uplink: bool) -> bytes:
    """MIC of a data `frame` (MHDR..FRMPayload, without the MIC): B0 says its direction."""
    return _cmac(nwk_skey, _block(0x49, dev_addr, fcnt32, len(frame), uplink=uplink) + frame)


def verify_mic(nwk_skey: bytes, frame: Uplink, fcnt32: int) -> bool:
    """Whether a parsed data frame's MIC verifies; up or down, as its MHDR says."""
    expected = data_mic(nwk_skey, frame.raw[:-4], frame.dev_addr, fcnt32,
                        uplink=frame.mtype in UPLINKS)  # fmt: skip
    return hmac.compare_digest(expected, frame.mic)


def build_downlink(
    dev_addr: int,
    fcnt32: int,
    nwk_skey: bytes,
    app_skey: bytes,
    *,
    ack: bool = False,
    fport: int | None = None,
    payload: bytes = b"",
    fopts: bytes = b"",
) -> bytes:
    """An unconfirmed downlink from the network: the ACK of a confirmed uplink, MAC
    command answers in FOpts (in clear, as LoRaWAN 1.0 sends them), or both."""
    if fport is None and payload:
        raise ValueError("a payload needs an FPort")
    if len(fopts) > 15 or (fopts and fport == 0):
        raise ValueError("FOpts holds at most 15 bytes, and never beside FPort 0")
    fctrl = (0x20 if ack else 0) | len(fopts)
    frame = struct.pack("<BIBH", MType.UNCONFIRMED_DOWN << 5, dev_addr, fctrl,
                        fcnt32 & 0xFFFF) + fopts  # fmt: skip
    if fport is not None:
        key = nwk_skey if fport == 0 else app_skey
        frame += bytes([fport]) + crypt_frm_payload(key, dev_addr, fcnt32, payload, uplink=False)
    return frame + data_mic(nwk_skey, frame, dev_addr, fcnt32, uplink=False)


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
    return frame + data_mic(nwk_skey, frame, dev_addr, fcnt32, uplink=True)
