"""A simulated packet forwarder: what a LoRa concentrator in the cabinet sends the agent.

Real GWMP datagrams over UDP: PUSH_DATA with the frames a device would send,
PULL_DATA keep-alives, and raw bytes for tests of what must be survived. Each
PUSH/PULL waits for its acknowledgement (bounded timeout, bounded retries), as
the real forwarder counts `ackr`. Downlinks (PULL_RESP) are answered with TX_ACK
and queued for `downlink()`; `join` plays an OTAA device's side of a join.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import secrets
import time
from collections.abc import Sequence
from typing import Any

from cityedge.drivers.lorawan.frames import (
    build_join_request,
    build_uplink,
    derive_session_keys,
    open_join_accept,
)
from cityedge.drivers.lorawan.keyring import OtaaDevice, Session
from cityedge.drivers.lorawan.semtech import (
    PULL_ACK,
    PULL_RESP,
    PUSH_ACK,
    TX_ACK,
    VERSION,
    ack,
    pull_data,
    push_data,
    rxpk_json,
)
from cityedge.street.lorawan_reports import bin_report, example_payload


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.acks: asyncio.Queue[bytes] = asyncio.Queue()
        self.downlinks: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) > 4 and data[0] == VERSION and data[3] == PULL_RESP:
            token = int.from_bytes(data[1:3], "big")
            self.downlinks.put_nowait((token, json.loads(data[4:])["txpk"]))
        else:
            self.acks.put_nowait(data)


def concentrator_clock() -> int:
    """The concentrator's free-running microsecond counter (`tmst`), 32 bits."""
    return int(time.monotonic() * 1e6) & 0xFFFFFFFF


class PacketForwarder:
    """`async with PacketForwarder("AA555A0000000101", port) as fwd: await fwd.uplink(frame)`."""

    def __init__(self, eui: str, port: int, host: str = "127.0.0.1", *,
                 ack_timeout: float = 1.0, retries: int = 3) -> None:  # fmt: skip
        self.eui = eui.upper()
        self.address = (host, port)
        self.ack_timeout = ack_timeout
        self.retries = retries
        self.sent = 0
        self.acked = 0
        self._tokens = itertools.count(1)
        self.last_tmst = 0  # of the last uplink sent
        self.last_txpk: dict[str, Any] = {}  # the last downlink received
        self._transport: asyncio.DatagramTransport | None = None
        self._client = _Client()

    async def __aenter__(self) -> PacketForwarder:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: self._client, remote_addr=self.address
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._transport is not None:
            self._transport.close()

    def _token(self) -> int:
        return next(self._tokens) & 0xFFFF

    async def _send_acked(self, datagram: bytes, token: int, answer: int) -> bool:
        assert self._transport is not None, "use `async with`"
        expected = bytes([VERSION]) + token.to_bytes(2, "big") + bytes([answer])
        for _ in range(self.retries):
            self._transport.sendto(datagram)
            self.sent += 1
            try:
                async with asyncio.timeout(self.ack_timeout):
                    while True:
                        if (await self._client.acks.get())[:4] == expected:
                            self.acked += 1
                            return True
            except TimeoutError:
                continue
        return False

    async def uplink(self, *frames: bytes, rssi: float = -95.0, lsnr: float = 7.0,
                     sf: int = 9, freq: float = 868.1) -> bool:  # fmt: skip
        """One PUSH_DATA carrying `frames` as heard by this forwarder; True once acked."""
        token = self._token()
        tmst = self.last_tmst = concentrator_clock()
        rxpk = [rxpk_json(f, rssi=rssi, lsnr=lsnr, sf=sf, freq=freq, tmst=tmst) for f in frames]
        return await self._send_acked(push_data(token, self.eui, rxpk), token, PUSH_ACK)

    async def downlink(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next txpk the agent asked this forwarder to send (acknowledged with
        TX_ACK as a real forwarder does); TimeoutError when none comes."""
        assert self._transport is not None, "use `async with`"
        token, txpk = await asyncio.wait_for(self._client.downlinks.get(), timeout)
        self.last_txpk = txpk
        report = json.dumps({"txpk_ack": {"error": "NONE"}}).encode()
        self._transport.sendto(ack(token, TX_ACK) + bytes.fromhex(self.eui) + report)
        return txpk

    async def join(self, device: OtaaDevice, dev_nonce: int, timeout: float = 10.0) -> Session:
        """An OTAA device's join heard by this forwarder: the request up, the accept
        down (RX1), opened with the AppKey; the session the device now uses."""
        frame = build_join_request(device.join_eui, device.dev_eui, dev_nonce, device.app_key)
        if not await self.uplink(frame):
            raise TimeoutError("the agent did not acknowledge the join request")
        txpk = await self.downlink(timeout)
        accept = open_join_accept(device.app_key, base64.b64decode(txpk["data"]))
        nwk_skey, app_skey = derive_session_keys(
            device.app_key, accept.app_nonce, accept.net_id, dev_nonce
        )
        return Session(device.name, device.device_type, accept.dev_addr, nwk_skey, app_skey)

    async def status(self, **stat: Any) -> bool:
        token = self._token()
        return await self._send_acked(push_data(token, self.eui, stat=stat), token, PUSH_ACK)

    async def keepalive(self) -> bool:
        token = self._token()
        return await self._send_acked(pull_data(token, self.eui), token, PULL_ACK)

    def raw(self, data: bytes) -> None:
        """Send bytes as they are (garbage, truncated datagrams); no ack expected."""
        assert self._transport is not None, "use `async with`"
        self._transport.sendto(data)
        self.sent += 1


class LoRaStreet:
    """Sensors reporting through two forwarders, for the demo: every `period` s one
    sensor reports (heard by one or both forwarders); the first bin slowly fills
    up until it raises `bin.full`, then is emptied. OTAA sensors join first."""

    def __init__(self, sessions: list[Session], port: int, period: float = 2.0,
                 otaa: Sequence[OtaaDevice] = ()) -> None:  # fmt: skip
        self.sessions = list(sessions)
        self.otaa = otaa
        self.port = port
        self.period = period
        self.fcnt: dict[int, int] = {}

    def next_frame(self, session: Session, n: int) -> bytes:
        fcnt = self.fcnt[session.dev_addr] = self.fcnt.get(session.dev_addr, 0) + 1
        fport, body = example_payload(session.device_type, n)
        if session.device_type == "waste-bin" and session is self.sessions[0]:
            fill = (n * 7) % 110  # % full: crosses 90 now and then
            body = bin_report(max(0, 1100 - 11 * fill), 17.5 + (n % 5) * 0.5)
        return build_uplink(session.dev_addr, fcnt, fport, body,
                            session.nwk_skey, session.app_skey)  # fmt: skip

    async def run(self, euis: tuple[str, str] = ("AA555A0000000101", "AA555A0000000102")) -> None:
        async with PacketForwarder(euis[0], self.port) as near, \
                PacketForwarder(euis[1], self.port) as far:  # fmt: skip
            for _ in range(60):  # wait (at most ~1 min) for the agent to listen
                if await near.keepalive():
                    break
            for device in self.otaa:
                with contextlib.suppress(TimeoutError):  # not answered: it stays silent
                    self.sessions.append(await near.join(device, secrets.randbits(16)))
            for n in itertools.count():
                session = self.sessions[n % len(self.sessions)]
                frame = self.next_frame(session, n)
                await near.uplink(frame, rssi=-92.0 - n % 7, lsnr=6.5)
                if n % 2:  # the far antenna hears every other frame, worse
                    await far.uplink(frame, rssi=-116.0, lsnr=-3.0)
                if n % 15 == 0:
                    await near.status(rxnb=n + 1, rxok=n + 1, rxfw=n + 1, ackr=100.0)
                await asyncio.sleep(self.period)
