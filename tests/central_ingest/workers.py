"""Ingest workers as the operator runs them: `cityedge central ingest` subprocesses."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from cityedge.street.fleet import SimulatedGateway
from tests.support.agent_process import ROOT, agent_env


def trust_args(gateways: list[SimulatedGateway]) -> list[str]:
    return [a for g in gateways for a in ("--trust", f"{g.gateway}={g.key.public_text()}")]


class Worker:
    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self._from = 0

    def start(self) -> Worker:
        with self.log.open("ab") as out:
            self._from = out.tell()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cityedge.cli", "central", "ingest", *self.args],
                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=agent_env(),
            )  # fmt: skip
        return self

    def _running(self) -> bool:
        """Whether this run said it is running: its signal handlers are installed."""
        with self.log.open("rb") as log:
            log.seek(self._from)
            return b"ingest running" in log.read()

    async def ready(self, timeout: float = 30.0) -> None:
        """Wait until this run installed its signal handlers (a SIGTERM then stops it)."""

        async def up() -> bool:
            return self._running()

        await wait_until(up, timeout, f"ingest worker ready ({self.log.name})")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            # a SIGTERM before its handlers are installed kills it (-15) instead of
            # stopping it: a worker started last may still be importing
            deadline = time.monotonic() + 30
            while not self._running() and self.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


async def pg_count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql) or 0)
    except asyncpg.UndefinedTableError:
        return 0  # no worker created the schema yet
    finally:
        await conn.close()


async def wait_until(check: object, timeout: float, what: str) -> None:
    """Poll an async predicate until it holds; fail naming `what` after `timeout`."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        if await check():  # type: ignore[operator]
            return
        if loop.time() > end:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.2)


async def ledger(dsn: str) -> dict[str, int]:
    """What the database holds, for the verdict: counts, duplicates, holes."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM messages) AS messages,"
            " (SELECT count(*) FROM readings) AS readings,"
            " (SELECT count(*) FROM (SELECT 1 FROM readings GROUP BY gateway, device, point, ts"
            "   HAVING count(*) > 1) d) AS twice,"
            " (SELECT coalesce(sum(entries), 0) FROM messages) AS entries,"
            " (SELECT count(*) FROM holes) AS holes"
        )
        return {k: int(v) for k, v in dict(row).items()}
    finally:
        await conn.close()
