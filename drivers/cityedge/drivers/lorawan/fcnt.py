"""Last accepted uplink frame counter per DevAddr, kept in SQLite across restarts.

A replayed frame (a counter at or below the last accepted one) is refused also
after the agent restarts: the counter is committed before the frame's readings
are handed on. A frame is accepted only after its MIC verified, so a forged
counter cannot push a device's window forward.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from cityedge.drivers.lorawan.frames import MAX_FCNT_GAP, full_fcnt


@dataclass(frozen=True, slots=True)
class Verdict:
    fcnt32: int
    replay: bool
    lost: int  # frames missing between the last accepted one and this one


class FrameCounters:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.set_aside: Path | None = None  # where a corrupt file went, for the caller to report
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open()
        except sqlite3.OperationalError:
            # Locked (another process holds it) or unreadable: not proof of damage.
            # Setting a healthy file aside would reset every counter and let replays
            # in, so the driver fails and the supervisor retries instead.
            raise
        except sqlite3.DatabaseError:
            self.set_aside = _free_name(path.with_name(f"{path.name}.corrupt-{int(time.time())}"))
            path.rename(self.set_aside)
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{path}{suffix}").unlink()
            self._db = self._open()
        self._last: dict[int, int] = dict(self._db.execute("SELECT dev_addr, fcnt FROM fcnt"))

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check failed")  # damage: set aside
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives the agent being killed; only a
            # power cut may lose the last ones, and with them at most the frames
            # heard in that instant. FULL would fsync every frame: at 50 frames/s
            # that is flash wear and 15x the decoding cost (bench/lorawan.py).
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS fcnt (dev_addr INTEGER PRIMARY KEY, fcnt INTEGER)"
            )
            # the network's own counter per session, for its downlinks (ACKs)
            db.execute(
                "CREATE TABLE IF NOT EXISTS fcnt_down (dev_addr INTEGER PRIMARY KEY, fcnt INTEGER)"
            )
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def last(self, dev_addr: int) -> int | None:
        return self._last.get(dev_addr)

    def check(self, dev_addr: int, fcnt16: int) -> Verdict:
        last = self._last.get(dev_addr)
        fcnt32 = full_fcnt(fcnt16, last, MAX_FCNT_GAP)
        if last is None:
            return Verdict(fcnt32, replay=False, lost=0)
        if fcnt32 <= last:
            return Verdict(fcnt32, replay=True, lost=0)
        return Verdict(fcnt32, replay=False, lost=fcnt32 - last - 1)

    def accept(self, dev_addr: int, fcnt32: int) -> None:
        self._db.execute(
            "INSERT INTO fcnt (dev_addr, fcnt) VALUES (?, ?) "
            "ON CONFLICT(dev_addr) DO UPDATE SET fcnt = excluded.fcnt",
            (dev_addr, fcnt32),
        )
        self._last[dev_addr] = fcnt32

    def forget(self, dev_addr: int) -> None:
        """A new session on this address (an OTAA join): its counters start again."""
        self._db.execute("DELETE FROM fcnt WHERE dev_addr = ?", (dev_addr,))
        self._db.execute("DELETE FROM fcnt_down WHERE dev_addr = ?", (dev_addr,))
        self._last.pop(dev_addr, None)

    def next_down(self, dev_addr: int) -> int:
        """The downlink counter to use now, stored before the frame goes out: a device
        refuses a downlink whose counter does not move forward."""
        row = self._db.execute(
            "INSERT INTO fcnt_down (dev_addr, fcnt) VALUES (?, 0) "
            "ON CONFLICT(dev_addr) DO UPDATE SET fcnt = fcnt + 1 RETURNING fcnt",
            (dev_addr,),
        ).fetchone()
        return int(row[0])

    def close(self) -> None:
        self._db.close()


def _free_name(path: Path) -> Path:
    """`path`, or `path.1`, `path.2`… when an earlier set-aside file has that name."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate
