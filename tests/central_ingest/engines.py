"""A PostgreSQL database of the test's own on the local server, dropped after."""

from __future__ import annotations

import uuid

import asyncpg

from cityedge.street.engines import NatsNode, RabbitNode

__all__ = ["NatsNode", "RabbitNode", "create_database", "drop_database"]

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


async def create_database() -> str:
    """A new database on the local server; returns its DSN."""
    name = f"cityedge_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


async def drop_database(dsn: str) -> None:
    name = dsn.rsplit("/", 1)[1]
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
