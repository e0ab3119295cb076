"""Pick a store by its URL."""

from __future__ import annotations

from cityedge.central.ingest.store.base import Store


def open_store(url: str) -> Store:
    """`postgresql://…` (or `postgres://…`) for PostgreSQL, `sqlite:PATH` or a plain path
    for SQLite."""
    if url.startswith(("postgresql://", "postgres://")):
        from cityedge.central.ingest.store.postgres import PostgresStore

        return PostgresStore(url)
    from cityedge.central.ingest.store.sqlite import SqliteStore

    path = url.removeprefix("sqlite://").removeprefix("sqlite:")
    if not path:
        raise ValueError(f"store {url!r}: expected postgresql://… or sqlite:PATH")
    return SqliteStore(path)
