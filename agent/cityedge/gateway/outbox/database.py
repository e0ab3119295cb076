"""The outbox's SQLite file: schema, opening with its pragmas, earlier layouts'
columns, setting a corrupt file aside, the per-row digest, and the few queries
tools share."""

from __future__ import annotations

import shutil
import sqlite3
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    priority INTEGER NOT NULL,
    count INTEGER NOT NULL,          -- entries carried
    first_ts REAL NOT NULL DEFAULT 0,  -- oldest and newest entry time stamp
    last_ts REAL NOT NULL DEFAULT 0,
    historical INTEGER NOT NULL DEFAULT 0,  -- sealed while the uplink was down
    digest INTEGER,  -- CRC-32 of payload, checked before it is sent (NULL: not kept)
    -- the signed envelope, byte for byte as it travels. Last: a column stored after
    -- a ~19 KiB payload sits on its overflow pages, so stats, eviction and start-up
    -- would read every message whole to learn its count or time stamps.
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_priority ON messages (priority, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- messages whose payload no longer matches its digest: kept for the post-mortem, never sent
CREATE TABLE IF NOT EXISTS damaged (seq INTEGER PRIMARY KEY, kind TEXT, priority INTEGER,
    count INTEGER, digest INTEGER, payload BLOB, found REAL);
"""


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        db.isolation_level = "DEFERRED"  # `with db:` groups statements into one transaction
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.DatabaseError(f"cannot use WAL journal (got {mode})")
        db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        # Builds with SECURE_DELETE (Debian's) zero every freed page: each delivered
        # message would be written a second time, as zeros. Readings are not secrets
        # (no personal data enters the outbox, docs/privacy.md); FAST still clears
        # what shares a page with live rows, at no extra I/O.
        db.execute("PRAGMA secure_delete=FAST")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check}")
        db.executescript(SCHEMA)
        add_columns(db)
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


def add_columns(db: sqlite3.Connection) -> None:
    """A `messages` table of an earlier layout lacks the time range and the flag."""
    have = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
    for column in ("first_ts REAL NOT NULL DEFAULT 0", "last_ts REAL NOT NULL DEFAULT 0",
                   "historical INTEGER NOT NULL DEFAULT 0", "digest INTEGER"):  # fmt: skip
        if column.split()[0] not in have:
            db.execute(f"ALTER TABLE messages ADD COLUMN {column}")


def move_aside(path: Path, reason: str) -> Path:
    """Keep a corrupt store for the post-mortem (never delete data), start a fresh one."""
    aside = _free_name(path, "corrupt")
    path.rename(aside)
    for suffix in ("-wal", "-shm"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            extra.rename(aside.with_name(aside.name + suffix))
    log.error("outbox.corrupt", path=str(path), set_aside=str(aside), reason=reason)
    return aside


def copy_aside(path: Path, reason: str) -> Path | None:
    """Keep a copy of a damaged file (a WAL whose frames SQLite skipped) for the
    post-mortem; the store itself goes on. None if there is no such file."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    aside = _free_name(path, "damaged")
    shutil.copyfile(path, aside)
    log.error("outbox.corrupt", path=str(path), set_aside=str(aside), reason=reason)
    return aside


def _free_name(path: Path, what: str) -> Path:
    """`<name>.<what>-<time>`, never one already there (two in one second)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    aside = path.with_name(f"{path.name}.{what}-{stamp}")
    for n in range(1, 1000):
        if not aside.exists():
            break
        aside = path.with_name(f"{path.name}.{what}-{stamp}.{n}")
    return aside


def digest(payload: bytes) -> int:
    """CRC-32: catches any flipped bit or burst in a payload at ~1 GB/s (a signature
    check per message would cost what the drain spends on everything else)."""
    return zlib.crc32(payload)


def is_full(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "full" in text or "no space" in text


def runs(seqs: list[int]) -> list[tuple[int, int]]:
    """Sorted numbers as (first, last) runs: PUBACKs mostly arrive in order, so a
    few hundred acknowledgements are a handful of range deletes."""
    runs: list[tuple[int, int]] = []
    for seq in seqs:
        if runs and runs[-1][1] == seq - 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


def stored_messages(db: sqlite3.Connection) -> Iterator[tuple[int, str, int, bytes]]:
    """(seq, kind, priority, payload) of every stored message, in sequence order: for
    tools reading a store they do not own."""
    yield from db.execute("SELECT seq, kind, priority, payload FROM messages ORDER BY seq")
