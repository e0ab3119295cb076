"""From driver output to outbox rows: report by exception, periodic full report, commits.

Drivers `await pipeline.emit(items)`; a bounded queue carries the items to one
consumer, which filters readings by each point's deadband (a value goes up when it
moved by at least the deadband, or when its full-report interval is due), encodes
survivors as outbox entries and buffers them. A committer turns the buffer into
one SQLite transaction per window: that commit is the moment a reading is accepted.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import structlog

from cityedge.gateway.outbox import CLOCK_FLOOR, Entry, Outbox
from cityedge.protocol.entries import event_entry, packed_reading
from cityedge.protocol.readings import wire_time
from cityedge.sdk.model import Event, PointInfo, Priority, Quality, Reading

log = structlog.get_logger(__name__)

Catalogue = Callable[[], Mapping[tuple[str, str], PointInfo]]
# Module globals: an enum member looked up through its class costs more, per reading.
_GOOD: Final = Quality.GOOD
_TELEMETRY: Final = Priority.TELEMETRY


@dataclass(slots=True)
class PipelineStats:
    received: int = 0
    reported: int = 0
    suppressed: int = 0  # inside the deadband
    events: int = 0
    refused: int = 0  # items that cannot be encoded (driver bugs), logged
    clock_flagged: int = 0  # readings taken while the wall clock was not trusted
    committed: int = 0
    commits: int = 0
    queue_high_water: int = 0


class Pipeline:
    def __init__(
        self,
        outbox: Outbox,
        points: Catalogue,
        *,
        full_report_interval: float,
        commit_interval: float,
        queue_size: int,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self._points = points
        self._deadbands: dict[tuple[str, str], float] | None = None
        self.full_report_interval = full_report_interval
        self.commit_interval = commit_interval
        # Bounded in batches: a driver flooding at 10x its rate waits in emit()
        # instead of growing memory (backpressure reaches the poll loop).
        self._queue: asyncio.Queue[Sequence[Reading | Event]] = asyncio.Queue(
            maxsize=max(1, queue_size // 50)
        )
        self._last: dict[tuple[str, str], tuple[object, float]] = {}
        self._dirty = asyncio.Event()
        self._on_commit = on_commit
        self.stats = PipelineStats()
        # False while the system says the wall clock is not synchronised: readings
        # are then flagged, so the command post knows their timestamps are suspect.
        self.clock_trusted = True
        # Local logic (lighting) sees every item before the deadband, uplink or not.
        self.observers: list[Callable[[Sequence[Reading | Event]], None]] = []

    async def emit(self, items: Sequence[Reading | Event]) -> None:
        if items:
            await self._queue.put(items)
            size = self._queue.qsize()
            if size > self.stats.queue_high_water:
                self.stats.queue_high_water = size

    def deadband(self, device: str, point: str) -> float:
        if self._deadbands is None:
            self._deadbands = {k: v.deadband or 0.0 for k, v in self._points().items()}
        return self._deadbands.get((device, point), 0.0)

    def accept(self, items: Sequence[Reading | Event]) -> None:
        """Filter and buffer one batch (synchronous: no awaits between filter and add)."""
        for observe in self.observers:
            observe(items)
        entries: list[Entry] = []
        now = time.monotonic()
        for item in items:
            if isinstance(item, Event):
                try:
                    body = event_entry(item)
                except ValueError as exc:
                    self._refuse(item, exc)
                    continue
                entries.append(Entry("event", int(item.priority), item.ts, body))
                self.stats.events += 1
                continue
            self.stats.received += 1
            if item.quality is _GOOD and (not self.clock_trusted or item.ts < CLOCK_FLOOR):
                # built directly: dataclasses.replace costs 4x, on every reading while
                # the clock is unsynchronised
                item = Reading(item.device, item.point, item.value, item.ts, item.unit,
                               Quality.CLOCK_UNSYNCED)  # fmt: skip
                self.stats.clock_flagged += 1
            key = (item.device, item.point)
            last = self._last.get(key)
            if last is not None and now - last[1] < self.full_report_interval:
                previous = last[0]
                if not _moved(previous, item.value, self.deadband(*key)):
                    self.stats.suppressed += 1
                    continue
            try:
                body, fields = packed_reading(item)
            except ValueError as exc:  # NaN time, bad quality: a driver bug, not a crash
                self._refuse(item, exc)
                continue
            self._last[key] = (item.value, now)
            # the time the reading travels with: the outbox's time ranges (eviction
            # reports) then hold exactly the times the command post sees
            entries.append(Entry("telemetry", _TELEMETRY, wire_time(item.ts), body, fields))
            self.stats.reported += 1
        if entries:
            self.outbox.add(entries)
            self._dirty.set()

    def _refuse(self, item: Reading | Event, exc: ValueError) -> None:
        self.stats.refused += 1
        log.warning("pipeline.refused", item=repr(item)[:200], error=str(exc))

    async def run(self) -> None:
        """Consume the queue until cancelled."""
        while True:
            items = await self._queue.get()
            self.accept(items)

    async def committer(self) -> None:
        """Commit at most once per window, as soon as a window has something in it."""
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.commit_interval)
            self._dirty.clear()
            self.commit()

    def drain(self) -> None:
        """Take whatever is still queued (at shutdown) into the buffer."""
        while not self._queue.empty():
            self.accept(self._queue.get_nowait())

    def commit(self) -> int:
        rows = self.outbox.commit()
        if rows:
            self.stats.committed += rows
            self.stats.commits += 1
            if self._on_commit:
                self._on_commit()
        return rows


# A few ulps of the largest operand: what decoding (raw * scale) and the subtraction
# may have cost, far below any real deadband.
_ULPS = 16 * sys.float_info.epsilon


def _moved(previous: object, value: object, deadband: float) -> bool:
    if isinstance(value, bool) or isinstance(previous, bool):
        return value != previous
    if isinstance(value, int | float) and isinstance(previous, int | float):
        if deadband <= 0:
            return value != previous
        # 1234.57 - 1234.56 is 0.00999999999999: a change of exactly the deadband must
        # pass, so the comparison forgives rounding relative to the values' magnitude.
        slack = _ULPS * max(abs(value), abs(previous), deadband)
        return abs(value - previous) >= deadband - slack
    return value != previous
