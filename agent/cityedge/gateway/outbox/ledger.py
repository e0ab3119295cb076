"""What the outbox knows about its store from outside the store's own files.

A store cannot vouch for itself: emptied to 0 bytes it opens as a new database,
without its WAL it opens as it was at the last checkpoint, and in both cases
SQLite says nothing. So two small files sit next to it:

- `<store>.seq` — the sequence high-water mark and the store's identity, written
  with `write_atomic` (fsync'ed) and advanced `BLOCK` numbers ahead, so it is
  written once per `BLOCK` messages, not per message. No message is sealed with a
  number above it; after the store is lost, numbering resumes above it, so a
  number never goes back.
- `<store>.tally` — what the store holds after each transaction: its identity,
  lowest and highest sequence number and entries per priority. Overwritten in
  place (one `pwrite`, no fsync): like the WAL under `synchronous=NORMAL` it
  survives kill -9, and it is written after the commit, so it never claims more
  than the store has. On opening, a store that holds less than its tally lost
  something, and the tally says what.
- `<store>.reserve` — space set aside (see `Reserve`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import structlog

from cityedge.sdk.atomic import write_atomic

log = structlog.get_logger(__name__)

BLOCK = 1024  # sequence numbers reserved per write of the mark
_TALLY = struct.Struct("<4sQqqqqq")  # magic, store, low, last, entries by priority 1..3
_MAGIC = b"CET1"
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True, slots=True)
class Tally:
    store: int
    low: int  # lowest sequence number held (last + 1 when empty)
    last: int  # highest sequence number committed
    entries: tuple[int, int, int]  # entries held: telemetry, events, alarms and results

    def counts(self) -> dict[int, int]:
        return {p: n for p, n in zip((1, 2, 3), self.entries, strict=True) if n}


class MarkUnwritable(OSError):
    """The high-water mark could not be advanced: nothing may be numbered past it."""


class Ledger:
    """The high-water mark and the tally of one store (the module docstring)."""

    def __init__(self, store_path: Path) -> None:
        self.mark_path = store_path.with_name(store_path.name + ".seq")
        self.tally_path = store_path.with_name(store_path.name + ".tally")
        self.store = 0  # identity of the store the mark belongs to; 0: none yet
        self.reserved = 0
        with contextlib.suppress(FileNotFoundError):
            try:
                mark = json.loads(self.mark_path.read_text())
                self.store, self.reserved = int(mark["store"]), int(mark["reserved"])
            except (ValueError, KeyError, TypeError) as exc:
                # a mark is written atomically: unreadable means tampered with, not torn
                log.error("outbox.mark_unreadable", path=str(self.mark_path), error=str(exc))
        self.tally = self._read_tally()
        self._fd: int | None = None

    def _read_tally(self) -> Tally | None:
        try:
            raw = self.tally_path.read_bytes()
        except FileNotFoundError:
            return None
        crc = int.from_bytes(raw[-4:], "little")
        if len(raw) != _TALLY.size + 4 or zlib.crc32(raw[:-4]) != crc:
            log.error("outbox.tally_unreadable", path=str(self.tally_path))
            return None
        magic, store, low, last, *entries = _TALLY.unpack(raw[:-4])
        if magic != _MAGIC:
            return None
        return Tally(store, low, last, (entries[0], entries[1], entries[2]))

    def reserve(self, upto: int, store: int) -> None:
        """Make sure numbers up to `upto` are below the mark, for `store`. Raises
        MarkUnwritable (a full disk, say): then nothing may be numbered past the mark."""
        if upto <= self.reserved and store == self.store:
            return
        reserved = max(upto, self.reserved) + BLOCK
        try:
            write_atomic(self.mark_path, json.dumps({"store": store, "reserved": reserved}))
        except OSError as exc:
            raise MarkUnwritable(exc.errno, f"sequence mark {self.mark_path}: {exc}") from exc
        self.store, self.reserved = store, reserved

    def record(self, tally: Tally) -> None:
        """After a committed transaction. Best effort: a tally that cannot be written
        only weakens the check at the next opening, and is said so."""
        packed = _TALLY.pack(_MAGIC, tally.store, tally.low, tally.last, *tally.entries)
        packed += zlib.crc32(packed).to_bytes(4, "little")
        try:
            if self._fd is None:
                flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
                self._fd = os.open(self.tally_path, flags, 0o644)
            os.pwrite(self._fd, packed, 0)  # same size each time: never grows the file
        except OSError as exc:
            log.error("outbox.tally_unwritable", path=str(self.tally_path), error=str(exc))
            return
        self.tally = tally

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def is_full_errno(exc: OSError) -> bool:
    return exc.errno in _FULL_ERRNOS


class Reserve:
    """Space held back for a full disk. Freeing space in SQLite takes space: a
    DELETE appends its pages to the WAL first. On a full filesystem the eviction
    that should make room fails with "disk full" itself; releasing this file first
    gives it room. Made again only once the filesystem has twice its size free, so
    that taking it back does not fill the disk again at once."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size

    @property
    def held(self) -> bool:
        try:
            return self.path.stat().st_size >= self.size
        except FileNotFoundError:
            return False

    def ensure(self) -> bool:
        """Hold the reserve; True when it is held."""
        if self.held:
            return True
        try:
            stat = os.statvfs(self.path.parent)
            if stat.f_bavail * stat.f_frsize < 2 * self.size:
                return False
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)  # blocks allocated now, not lazily
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                self.path.unlink()
            log.warning("outbox.reserve_unavailable", path=str(self.path), error=str(exc))
            return False
        return True

    def release(self) -> bool:
        """Give the space back to the filesystem; True if there was something to give."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        log.warning("outbox.reserve_released", path=str(self.path), bytes=self.size)
        return True


def reserve_size(max_bytes: int) -> int:
    """Enough for the WAL frames of an eviction of 10 % of the store, within limits."""
    return min(max(max_bytes // 64, 256 * 1024), 4 * 1024 * 1024)
