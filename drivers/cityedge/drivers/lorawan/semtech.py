"""The Semtech packet forwarder's UDP protocol (GWMP, protocol version 2).

Upstream datagrams, forwarder → agent:

    PUSH_DATA  02 | token(2) | 00 | gateway EUI(8) | JSON {"rxpk": [...], "stat": {...}}
    PULL_DATA  02 | token(2) | 02 | gateway EUI(8)                (keep-alive for downlinks)
    TX_ACK     02 | token(2) | 05 | gateway EUI(8) | [JSON {"txpk_ack": {...}}]

answered with PUSH_ACK (02 | token | 01) and PULL_ACK (02 | token | 04).
Downstream, to the address the forwarder's PULL_DATA came from (join accepts):

    PULL_RESP  02 | token(2) | 03 | JSON {"txpk": {...}}

`parse_datagram` is pure; `ForwarderListener` is the asyncio endpoint that
acknowledges, counts and drops what is malformed, and hands every good `rxpk`
on. Nothing a datagram holds can raise past it, and nothing a stranger sends
grows it: only listed forwarders (or, with no list, the first `max_forwarders`
gateway EUIs heard) are answered and remembered; the rest are counted by reason.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, cast

import structlog

from cityedge.sdk.logs import Throttled

log = structlog.get_logger(__name__)

VERSION: Final = 2
PUSH_DATA, PUSH_ACK, PULL_DATA, PULL_RESP, PULL_ACK, TX_ACK = 0, 1, 2, 3, 4, 5
MAX_DATAGRAM: Final = 65507
_DATR = re.compile(r"SF(\d{1,2})BW(\d{3})")
SPREADING_FACTORS: Final = range(5, 13)
BANDWIDTHS: Final = (125, 250, 500, 203, 406, 812)  # kHz: sub-GHz, then 2.4 GHz
MAX_RXPK: Final = 256  # entries per datagram; a forwarder sends a few
MAX_COUNTER: Final = 2**32  # the forwarder's stat counters are uint32
MAX_FORWARDERS: Final = 8  # gateway EUIs remembered when none are listed


class GwmpError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True, slots=True)
class RxPacket:
    """One frame as one antenna of one forwarder heard it."""

    data: bytes
    freq: float  # MHz
    rssi: float
    lsnr: float
    spreading_factor: int | None  # None for FSK
    bandwidth: int | None  # kHz
    crc: int  # the forwarder's stat: 1 CRC ok, 0 no CRC, -1 CRC bad
    tmst: int
    chan: int = 0
    rfch: int = 0
    time: str | None = None

    @property
    def crc_ok(self) -> bool:
        return self.crc == 1


@dataclass(frozen=True, slots=True)
class Stat:
    rxnb: int = 0  # frames received
    rxok: int = 0  # with a good CRC
    rxfw: int = 0  # forwarded
    ackr: float = 0.0  # % of upstream datagrams acknowledged
    dwnb: int = 0
    txnb: int = 0


@dataclass(frozen=True, slots=True)
class Datagram:
    kind: int
    token: int
    eui: str
    rxpk: tuple[RxPacket, ...] = ()
    rejected: tuple[str, ...] = ()  # one line per bad rxpk entry
    stat: Stat | None = None
    tx_error: str | None = None  # TX_ACK: the forwarder's error, "NONE" when sent


def parse_datagram(data: bytes) -> Datagram:
    """GwmpError (reason, detail naming the field) for anything but a well-formed
    upstream datagram. A bad `rxpk` entry is listed in `rejected`, not fatal."""
    if len(data) > MAX_DATAGRAM:
        raise GwmpError("too-large", f"{len(data)} bytes")
    if len(data) < 4:
        raise GwmpError("too-short", f"{len(data)} bytes; a GWMP header has 4")
    if data[0] != VERSION:
        raise GwmpError("bad-version", f"protocol version {data[0]}, expected 2")
    token = int.from_bytes(data[1:3], "big")
    kind = data[3]
    if kind not in (PUSH_DATA, PULL_DATA, TX_ACK):
        raise GwmpError("unexpected-type", f"identifier {kind:#04x} is not sent upstream")
    if len(data) < 12:
        raise GwmpError("too-short", f"{len(data)} bytes; no room for the gateway EUI")
    eui = data[4:12].hex().upper()
    if kind == PULL_DATA:
        if len(data) != 12:
            raise GwmpError("bad-length", f"PULL_DATA of {len(data)} bytes, expected 12")
        return Datagram(kind, token, eui)
    body = data[12:]
    if kind == TX_ACK and not body.strip(b"\x00"):
        return Datagram(kind, token, eui, tx_error="NONE")  # an empty TX_ACK means sent
    doc = _json(body)
    if kind == TX_ACK:
        report = doc.get("txpk_ack")
        error = report.get("error", "NONE") if isinstance(report, dict) else None
        if not isinstance(error, str) or not 0 < len(error) <= 32:
            raise GwmpError("bad-field", "txpk_ack.error: expected a short text like TOO_LATE")
        return Datagram(kind, token, eui, tx_error=error)
    packets: list[RxPacket] = []
    rejected: list[str] = []
    rxpk = doc.get("rxpk", [])
    if not isinstance(rxpk, list):
        raise GwmpError("bad-json", "rxpk: expected an array")
    for i, entry in enumerate(rxpk[:MAX_RXPK]):
        try:
            packets.append(_rxpk(entry, f"rxpk[{i}]"))
        except GwmpError as exc:
            rejected.append(str(exc))
    if len(rxpk) > MAX_RXPK:
        rejected.append(
            f"too-many: rxpk[{MAX_RXPK}:]: {len(rxpk) - MAX_RXPK} entries beyond {MAX_RXPK} dropped"
        )
    stat = None
    if "stat" in doc:
        # A bad status report is listed like a bad rxpk entry: the frames beside it
        # in the same datagram are still good.
        try:
            stat = _stat(doc["stat"])
        except GwmpError as exc:
            rejected.append(str(exc))
    return Datagram(kind, token, eui, tuple(packets), tuple(rejected), stat)


def _json(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body.rstrip(b"\x00").decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise GwmpError("bad-json", f"payload is not JSON: {str(exc)[:80]}") from None
    if not isinstance(doc, dict):
        raise GwmpError("bad-json", f"payload is a JSON {type(doc).__name__}, expected an object")
    return doc


def _number(entry: dict[str, Any], key: str, where: str, lo: float, hi: float) -> float:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise GwmpError("bad-field", f"{where}.{key}: expected a number in {lo:g}..{hi:g}")
    return float(value)


def _rxpk(entry: Any, where: str) -> RxPacket:
    if not isinstance(entry, dict):
        raise GwmpError("bad-field", f"{where}: expected an object")
    raw = entry.get("data")
    if not isinstance(raw, str) or len(raw) > 400:
        raise GwmpError("bad-field", f"{where}.data: expected base64 text")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise GwmpError("bad-field", f"{where}.data: not valid base64") from None
    size = entry.get("size")
    if size is not None and size != len(data):
        raise GwmpError("bad-field", f"{where}.size: {size!r} but data holds {len(data)} bytes")
    sf = bw = None
    if entry.get("modu", "LORA") == "LORA":
        datr = entry.get("datr")
        match = _DATR.fullmatch(datr) if isinstance(datr, str) else None
        if (
            match is None
            or int(match[1]) not in SPREADING_FACTORS
            or int(match[2]) not in BANDWIDTHS
        ):
            raise GwmpError(
                "bad-field",
                f'{where}.datr: expected "SF<5-12>BW<125|250|500|203|406|812>", got {datr!r}'[:160],
            )
        sf, bw = int(match[1]), int(match[2])
    stat = entry.get("stat", 1)
    if isinstance(stat, bool) or stat not in (1, 0, -1):
        raise GwmpError(
            "bad-field", f"{where}.stat: expected 1 (CRC ok), 0 (no CRC) or -1 (CRC bad)"
        )
    tmst = entry.get("tmst", 0)
    return RxPacket(
        data=data,
        freq=_number(entry, "freq", where, 100, 3000),
        rssi=_number(entry, "rssi", where, -200, 50),
        lsnr=_number(entry, "lsnr", where, -50, 50) if "lsnr" in entry else 0.0,
        spreading_factor=sf,
        bandwidth=bw,
        crc=stat,
        tmst=tmst if isinstance(tmst, int) and not isinstance(tmst, bool) else 0,
        chan=entry.get("chan", 0) if isinstance(entry.get("chan", 0), int) else 0,
        rfch=entry.get("rfch", 0) if isinstance(entry.get("rfch", 0), int) else 0,
        time=entry.get("time") if isinstance(entry.get("time"), str) else None,
    )


def _stat(entry: Any) -> Stat:
    if not isinstance(entry, dict):
        raise GwmpError("bad-field", "stat: expected an object")

    def count(key: str) -> int:
        value = entry.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_COUNTER:
            raise GwmpError("bad-field", f"stat.{key}: expected a count in 0..{MAX_COUNTER - 1}")
        return value

    ackr = entry.get("ackr", 0.0)
    if isinstance(ackr, bool) or not isinstance(ackr, int | float) or not 0 <= ackr <= 100:
        raise GwmpError("bad-field", "stat.ackr: expected a percentage in 0..100")
    return Stat(
        rxnb=count("rxnb"), rxok=count("rxok"), rxfw=count("rxfw"),
        ackr=float(ackr), dwnb=count("dwnb"), txnb=count("txnb"),
    )  # fmt: skip


def ack(token: int, kind: int) -> bytes:
    return bytes([VERSION]) + token.to_bytes(2, "big") + bytes([kind])


def push_data(token: int, eui: str, rxpk: list[dict[str, Any]] | None = None,
              stat: dict[str, Any] | None = None) -> bytes:  # fmt: skip
    """What a packet forwarder sends (simulators, tests)."""
    doc: dict[str, Any] = {}
    if rxpk:
        doc["rxpk"] = rxpk
    if stat is not None:
        doc["stat"] = stat
    return ack(token, PUSH_DATA) + bytes.fromhex(eui) + json.dumps(doc).encode()


def pull_data(token: int, eui: str) -> bytes:
    return ack(token, PULL_DATA) + bytes.fromhex(eui)


def pull_resp(token: int, txpk: dict[str, Any]) -> bytes:
    return ack(token, PULL_RESP) + json.dumps({"txpk": txpk}).encode()


def txpk_json(frame: bytes, *, tmst: int, freq: float, sf: int, bw: int = 125,
              power: int = 14) -> dict[str, Any]:  # fmt: skip
    """A downlink sent at the concentrator's counter `tmst` (µs), polarity inverted as
    every LoRaWAN downlink is."""
    return {
        "imme": False, "tmst": tmst & 0xFFFFFFFF, "freq": freq, "rfch": 0, "powe": power,
        "modu": "LORA", "datr": f"SF{sf}BW{bw}", "codr": "4/5", "ipol": True,
        "size": len(frame), "data": base64.b64encode(frame).decode(),
    }  # fmt: skip


def rxpk_json(frame: bytes, *, rssi: float, lsnr: float, sf: int = 9, freq: float = 868.1,
              chan: int = 0, rfch: int = 0, tmst: int = 0) -> dict[str, Any]:  # fmt: skip
    return {
        "tmst": tmst, "chan": chan, "rfch": rfch, "freq": freq, "stat": 1, "modu": "LORA",
        "datr": f"SF{sf}BW125", "codr": "4/5", "rssi": rssi, "lsnr": lsnr,
        "size": len(frame), "data": base64.b64encode(frame).decode(),
    }  # fmt: skip


# --- the listener ------------------------------------------------------------------------


@dataclass
class Forwarder:
    eui: str
    address: tuple[str, int] | tuple[str, int, int, int]
    last_seen: float
    datagrams: int = 0
    frames: int = 0
    stat: Stat | None = None
    # where its PULL_DATA came from: the only address downlinks can go to (the
    # forwarder sends up and pulls down from two different sockets)
    pull_address: tuple[str, int] | tuple[str, int, int, int] | None = None


@dataclass
class ListenerStats:
    datagrams: int = 0
    frames: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # by reason
    downlinks: int = 0
    tx_errors: Counter[str] = field(default_factory=Counter)  # TX_ACK errors, by name


class ForwarderListener(asyncio.DatagramProtocol):
    """Acknowledges forwarders and hands each good rxpk to `deliver(eui, packet)`.

    `deliver` must not block: the driver puts into a bounded queue and counts what
    does not fit. `allowed`: the gateway EUIs accepted (production); empty accepts
    the first `max_forwarders` heard (a bench, the demo) and refuses every other
    (`too-many-forwarders`). A refused EUI is neither answered nor remembered: a
    flood of made-up EUIs costs a counter, not memory.
    """

    def __init__(
        self,
        deliver: Callable[[str, RxPacket], bool],
        allowed: frozenset[str] = frozenset(),
        clock: Callable[[], float] = time.time,
        on_stat: Callable[[str, Stat], None] | None = None,
        max_forwarders: int = MAX_FORWARDERS,
    ) -> None:
        self.deliver = deliver
        self.on_stat = on_stat
        self.allowed = allowed
        self.max_forwarders = max_forwarders
        self.clock = clock
        self.stats = ListenerStats()
        self.forwarders: dict[str, Forwarder] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self._token = 0
        self._dropped_log = Throttled(log, "lorawan.datagram.dropped")
        self._tx_log = Throttled(log, "lorawan.downlink.not_sent", key_field="error")
        self._socket_log = Throttled(log, "lorawan.socket.error", key_field="kind")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.stats.datagrams += 1
        if (
            len(data) >= 12
            and data[0] == VERSION
            and data[3] in (PUSH_DATA, PULL_DATA, TX_ACK)
            and not self._admits(data[4:12].hex().upper())
        ):
            return  # a stranger's payload is not even parsed
        try:
            datagram = parse_datagram(data)
        except GwmpError as exc:
            self._drop(exc.reason, f"{addr[0]}:{addr[1]}: {exc.detail}")
            return
        except Exception as exc:  # a parser bug must not silence the listener
            self._drop("parser-error", f"{type(exc).__name__}: {exc}")
            return
        if self.transport is not None and datagram.kind in (PUSH_DATA, PULL_DATA):
            answer = PUSH_ACK if datagram.kind == PUSH_DATA else PULL_ACK
            self.transport.sendto(ack(datagram.token, answer), addr)
        now = self.clock()
        forwarder = self.forwarders.get(datagram.eui)
        if forwarder is None:
            forwarder = self.forwarders[datagram.eui] = Forwarder(datagram.eui, addr, now)
            log.info("lorawan.forwarder.heard", eui=datagram.eui, address=f"{addr[0]}:{addr[1]}")
        forwarder.address, forwarder.last_seen = addr, now
        forwarder.datagrams += 1
        if datagram.kind == PULL_DATA:
            forwarder.pull_address = addr
        if datagram.tx_error not in (None, "NONE"):
            self.stats.tx_errors[str(datagram.tx_error)] += 1
            self._tx_log(str(datagram.tx_error), eui=datagram.eui)
        if datagram.stat is not None:
            forwarder.stat = datagram.stat
            if self.on_stat is not None:
                self.on_stat(datagram.eui, datagram.stat)
        for reason in datagram.rejected:
            self._drop("bad-rxpk", reason)
        for packet in datagram.rxpk:
            if not packet.crc_ok:
                # LoRaWAN uplinks always carry a CRC: a frame without one is as
                # untrustworthy as one whose CRC failed, but it is counted apart.
                reason, what = ("bad-crc", "a bad") if packet.crc < 0 else ("no-crc", "no")
                self._drop(reason, f"{datagram.eui}: frame with {what} radio CRC")
                continue
            forwarder.frames += 1
            self.stats.frames += 1
            if not self.deliver(datagram.eui, packet):
                self._drop("queue-full", "the decoder is behind; frame dropped")

    def send_downlink(self, eui: str, txpk: dict[str, Any]) -> bool:
        """PULL_RESP to forwarder `eui`; False when it never pulled (no address yet)."""
        forwarder = self.forwarders.get(eui)
        if self.transport is None or forwarder is None or forwarder.pull_address is None:
            return False
        self._token = (self._token + 1) & 0xFFFF
        self.transport.sendto(pull_resp(self._token, txpk), forwarder.pull_address)
        self.stats.downlinks += 1
        return True

    def _admits(self, eui: str) -> bool:
        """Whether a datagram from gateway `eui` is read at all; a refusal is counted."""
        if eui in self.forwarders:
            return True
        if self.allowed:
            if eui in self.allowed:
                return True
            self._drop("unknown-forwarder", f"gateway EUI {eui} is not in forwarders")
            return False
        if len(self.forwarders) < self.max_forwarders:
            return True
        self._drop(
            "too-many-forwarders",
            f"gateway EUI {eui}: {self.max_forwarders} forwarders heard already; "
            "list the cabinet's own in forwarders",
        )
        return False

    def _drop(self, reason: str, detail: str) -> None:
        # every drop counted; logged first loudly, then as a count per interval
        self.stats.dropped[reason] += 1
        self._dropped_log(reason, detail=detail)

    def flush_logs(self) -> None:
        """Log the counts of drops and errors not logged one by one (periodically)."""
        for throttled in (self._dropped_log, self._tx_log, self._socket_log):
            throttled.flush()

    def error_received(self, exc: Exception) -> None:
        self._socket_log(type(exc).__name__, error=str(exc))
