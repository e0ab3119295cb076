"""What the real agent still holds against what ingest stored: the verdict of the
tests that run `cityedge run` into `cityedge central ingest`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg

from tests.central_ingest.workers import pg_count


def outbox_seqs(db: Path) -> tuple[set[int], int]:
    """(seqs still held, highest seq ever assigned) of a stopped agent's outbox."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        held = {row[0] for row in conn.execute("SELECT seq FROM messages")}
        meta = conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
    return held, max([meta[0] if meta else 0, *held])


async def stored_seqs(dsn: str) -> set[int]:
    """The sequence numbers ingest stored (one gateway per test)."""
    conn = await asyncpg.connect(dsn)
    try:
        return {r["seq"] for r in await conn.fetch("SELECT seq FROM messages")}
    finally:
        await conn.close()


async def at_least(dsn: str, sql: str, n: int) -> bool:
    return await pg_count(dsn, sql) >= n
