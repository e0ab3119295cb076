"""OTAA joins handled at the gateway: LoRaWAN 1.0.x join server and network server
in one, for the devices whose AppKey is in the key file.

A join request is accepted when its device is known (by DevEUI and JoinEUI), its
MIC verifies under that device's AppKey, and its DevNonce was never used by that
device before (a recorded join request cannot be replayed to reset a session).
The answer is a join accept with a fresh DevAddr inside this network's NwkID
and a fresh AppNonce; the session keys derived from it replace the device's
previous session. Sessions and used DevNonces are kept in a SQLite file beside
the frame counters, mode 0600: they hold session keys.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cityedge.drivers.lorawan.frames import (
    JoinAccept,
    build_join_accept,
    derive_session_keys,
    parse_join_request,
    verify_join_request,
)
from cityedge.drivers.lorawan.keyring import OtaaDevice, Session

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    dev_eui TEXT PRIMARY KEY,
    dev_addr INTEGER NOT NULL UNIQUE,
    nwk_skey BLOB NOT NULL,
    app_skey BLOB NOT NULL,
    app_nonce INTEGER NOT NULL,
    joined REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS nonces (
    dev_eui TEXT NOT NULL,
    dev_nonce INTEGER NOT NULL,
    PRIMARY KEY (dev_eui, dev_nonce)
);
"""
ADDRESS_TRIES = 64  # random DevAddrs tried before giving up (a 25-bit space)
RX1_DELAY = 1  # s from a data uplink to RX1, told to every device that joins here


class JoinRefused(Exception):
    """A join request we do not answer. `reason` is counted like a frame refusal."""

    def __init__(self, reason: str, detail: str, device: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.device = device  # the device's name, when the request was really its own
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True, slots=True)
class Joined:
    device: OtaaDevice
    session: Session
    accept: bytes  # the PHYPayload to send in RX1 of the request
    previous: int | None  # the DevAddr of the session this one replaces


class JoinServer:
    def __init__(
        self,
        path: Path,
        devices: Mapping[str, OtaaDevice],
        *,
        net_id: int = 0,
        reserved: Callable[[], set[int]] = set,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`devices` by DevEUI; `reserved()` the DevAddrs that must not be handed out
        (ABP devices). NetID 0 and 1 are for private networks; its low 7 bits are
        the NwkID, the top bits of every DevAddr this server assigns."""
        self.path = path
        self.devices = devices
        self.net_id = net_id
        self.reserved = reserved
        self.clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        with contextlib.suppress(OSError):
            path.chmod(0o600)  # session keys inside
        self._db.executescript(SCHEMA)

    def sessions(self) -> list[Session]:
        """The sessions opened by earlier joins of devices still in the key file."""
        out = []
        for dev_eui, dev_addr, nwk_skey, app_skey in self._db.execute(
            "SELECT dev_eui, dev_addr, nwk_skey, app_skey FROM sessions ORDER BY dev_eui"
        ):
            device = self.devices.get(dev_eui)
            if device is not None:
                out.append(Session(device.name, device.device_type, dev_addr,
                                   bytes(nwk_skey), bytes(app_skey)))  # fmt: skip
        return out

    def join(self, payload: bytes) -> Joined:
        """Check a join request and open the session it asks for; FrameError (from
        parsing) or JoinRefused says why not."""
        request = parse_join_request(payload)
        device = self.devices.get(request.dev_eui)
        if device is None or device.join_eui != request.join_eui:
            # Another operator's device, most likely: never logged by EUI.
            raise JoinRefused("unknown-device", "a join request from a DevEUI with no AppKey here")
        if not verify_join_request(device.app_key, request):
            raise JoinRefused(
                "bad-mic", f"{device.name}: join request MIC does not verify", device.name
            )
        used = self._db.execute(
            "SELECT 1 FROM nonces WHERE dev_eui = ? AND dev_nonce = ?",
            (device.dev_eui, request.dev_nonce),
        ).fetchone()
        if used:
            raise JoinRefused(
                "join-replay",
                f"{device.name}: DevNonce {request.dev_nonce:04X} was used before",
                device.name,
            )
        row = self._db.execute(
            "SELECT dev_addr, app_nonce FROM sessions WHERE dev_eui = ?", (device.dev_eui,)
        ).fetchone()
        previous, last_nonce = (int(row[0]), int(row[1])) if row else (None, -1)
        app_nonce = (last_nonce + 1) & 0xFFFFFF  # increasing per device, as 1.0.4 asks
        dev_addr = self._new_address()
        accept = JoinAccept(app_nonce, self.net_id, dev_addr, dl_settings=0, rx_delay=RX1_DELAY)
        nwk_skey, app_skey = derive_session_keys(
            device.app_key, app_nonce, self.net_id, request.dev_nonce
        )
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO nonces (dev_eui, dev_nonce) VALUES (?, ?)",
                (device.dev_eui, request.dev_nonce),
            )
            self._db.execute(
                "INSERT INTO sessions (dev_eui, dev_addr, nwk_skey, app_skey, app_nonce, joined) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(dev_eui) DO UPDATE SET "
                "dev_addr = excluded.dev_addr, nwk_skey = excluded.nwk_skey, "
                "app_skey = excluded.app_skey, app_nonce = excluded.app_nonce, "
                "joined = excluded.joined",
                (device.dev_eui, dev_addr, nwk_skey, app_skey, app_nonce, self.clock()),
            )
        session = Session(device.name, device.device_type, dev_addr, nwk_skey, app_skey)
        return Joined(device, session, build_join_accept(device.app_key, accept), previous)

    def _new_address(self) -> int:
        taken = self.reserved() | {
            int(a) for (a,) in self._db.execute("SELECT dev_addr FROM sessions")
        }
        prefix = (self.net_id & 0x7F) << 25
        for _ in range(ADDRESS_TRIES):
            candidate = prefix | secrets.randbits(25)
            if candidate not in taken:
                return candidate
        raise JoinRefused("no-address", "no free DevAddr found in this network's NwkID")

    def close(self) -> None:
        self._db.close()
