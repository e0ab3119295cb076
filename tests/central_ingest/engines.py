"""A PostgreSQL database of the test's own on the local server, dropped after; the
engines of the test's own (re-exported) and `rabbitmqctl` for one of them."""

from __future__ import annotations

import subprocess
import uuid

import asyncpg

from cityedge.street.engines import NatsNode, RabbitNode

__all__ = ["NatsNode", "RabbitNode", "create_database", "drop_database", "rabbitmqctl"]

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
RABBITMQCTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"  # not the wrapper: it switches user


def rabbitmqctl(node: RabbitNode, *args: str, timeout: float = 60.0) -> str:
    """Run `rabbitmqctl -n NODE ARGS` against a node of the test's own (its cookie is in
    the node's HOME); returns stdout, raises on a non-zero exit with what it printed."""
    done = subprocess.run(
        [RABBITMQCTL, "-n", node.name, *args],
        env=node.env(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.returncode}\n{done.stderr}")
    return done.stdout


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
