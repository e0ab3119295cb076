"""Keep long-running tasks alive: restart with jittered backoff, say why they stopped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from cityedge.sdk.backoff import Backoff

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class TaskHealth:
    name: str
    restarts: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    running: bool = False


async def supervise(
    name: str,
    factory: Callable[[], Awaitable[None]],
    health: TaskHealth,
    *,
    min_delay: float = 0.5,
    max_delay: float = 60.0,
    healthy_after: float = 30.0,
) -> None:
    """Run `factory()` forever. A return or an exception is logged and followed by a
    restart after a jittered delay; the delay resets once a run lasted `healthy_after`
    seconds. Cancellation stops it, also when the task swallowed it (on Python 3.11
    `asyncio.wait_for` can return normally although its caller was cancelled): a task
    told to stop is never restarted."""
    # full jitter: no thundering herd of restarts after a city-wide outage
    backoff = Backoff(min_delay, max(min_delay, max_delay), full_jitter=True)
    this = asyncio.current_task()
    while True:
        started = time.monotonic()
        health.running = True
        try:
            await factory()
            reason = "returned"
        except asyncio.CancelledError:
            health.running = False
            raise
        except Exception as exc:  # any failure of one task must not take the agent down
            reason = f"{type(exc).__name__}: {exc}"
            log.error("task.failed", task=name, error=reason, exc_info=exc)
        health.running = False
        if this is not None and this.cancelling():
            raise asyncio.CancelledError  # the cancel the task swallowed: still a stop
        health.restarts += 1
        health.last_error = reason
        health.last_error_at = time.time()
        if time.monotonic() - started >= healthy_after:
            backoff.reset()
        delay = backoff.next()
        log.warning(
            "task.restart", task=name, reason=reason, in_s=round(delay, 2), restarts=health.restarts
        )
        await asyncio.sleep(delay)
