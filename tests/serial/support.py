"""Helpers of the serial tests (also used by hil_tests): a running driver, an emit sink,
bounded waits, and the fast settings that make port-loss tests quick."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from cityedge.sdk.driver import Driver, DriverEnv
from cityedge.sdk.model import DeviceHealth, Event, Reading

DATA = Path(__file__).parent / "data"
CAPTURE = DATA / "vehicle.nmea"

# Quick reopen and node checks: port-loss tests finish in well under a second.
FAST_LINE: dict[str, Any] = {"check_interval": 0.05, "reopen_min": 0.02, "reopen_max": 0.1}


def env(tmp_path: Path) -> DriverEnv:
    return DriverEnv(state_dir=tmp_path, config_dir=tmp_path)


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait for a condition; bounded, so a broken driver fails instead of hanging."""
    try:
        async with asyncio.timeout(timeout):
            # the drivers have no hook to wait on; polling them is simplest and bounded
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for: {what}") from None


class Sink:
    """The agent's side of `emit`: keeps everything a driver hands over."""

    def __init__(self) -> None:
        self.items: list[Reading | Event] = []
        self.batches = 0

    async def emit(self, items: Sequence[Reading | Event]) -> None:
        self.batches += 1
        self.items.extend(items)

    @property
    def readings(self) -> list[Reading]:
        return [i for i in self.items if isinstance(i, Reading)]

    @property
    def events(self) -> list[Event]:
        return [i for i in self.items if isinstance(i, Event)]

    def values(self, point: str) -> list[object]:
        return [r.value for r in self.readings if r.point == point]

    def kinds(self, kind: str) -> list[bool | None]:
        """The `active` flags of the events of one kind, in order."""
        return [e.active for e in self.events if e.kind == kind]


def health_of(driver: Driver, device: str) -> DeviceHealth:
    return next(h for h in driver.health() if h.device == device)


@asynccontextmanager
async def running(driver: Driver) -> AsyncIterator[Sink]:
    sink = Sink()
    task = asyncio.create_task(driver.run(sink.emit))
    try:
        yield sink
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5.0)
        assert task.done()
