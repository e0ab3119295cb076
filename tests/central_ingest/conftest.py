"""Fixtures for the ingest tests: a database per test (SQLite file or PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.central_ingest.engines import create_database, drop_database


@pytest.fixture
async def pg_dsn() -> AsyncIterator[str]:
    dsn = await create_database()
    try:
        yield dsn
    finally:
        await drop_database(dsn)


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:{tmp_path / 'central.db'}"
        return
    dsn = await create_database()
    try:
        yield dsn
    finally:
        await drop_database(dsn)


@pytest.fixture
def prefix() -> str:
    """A topic prefix of the test's own (engines may be shared)."""
    return f"t{uuid.uuid4().hex[:8]}/v1"
