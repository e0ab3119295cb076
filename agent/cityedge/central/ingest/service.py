"""The ingest loop: receive a batch, verify it, store it in one transaction, then
acknowledge it — never the other way round.

A source that fails is closed and connected again after a backoff; a store that
fails is retried with a backoff while the batch stays unacknowledged (if the
source drops meanwhile, the engine sends the batch again and the store drops
the copies). Rejected messages are recorded and acknowledged: they can never
become valid, and leaving them would block the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from cityedge.central.ingest.decode import Decoded, Decoder, Ignored, Rejected
from cityedge.central.ingest.metrics import Metrics
from cityedge.central.ingest.sources.base import Delivery, Source, SourceError
from cityedge.central.ingest.store.base import Store, StoreError, WriteReport
from cityedge.central.ingest.trust import SharedTrust
from cityedge.sdk.backoff import Backoff

log = structlog.get_logger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Tuning:
    max_batch: int = 500  # messages per transaction
    linger: float = 0.05  # seconds to fill a batch once its first message is there
    wait: float = 1.0  # seconds one receive waits (the stop flag is checked between)
    totals_every: float = 5.0  # seconds between hole / lag refreshes
    retry_first: float = 0.5
    retry_ceiling: float = 30.0


class IngestService:
    def __init__(self, source: Source, store: Store, decoder: Decoder, *,
                 metrics: Metrics | None = None, tuning: Tuning = Tuning(),
                 on_batch: Callable[[WriteReport], None] | None = None) -> None:  # fmt: skip
        self.source = source
        self.store = store
        self.trust = SharedTrust(decoder, store)
        self.metrics = metrics or Metrics()
        self.tuning = tuning
        self.on_batch = on_batch
        self.total = WriteReport()
        self._next_totals = 0.0
        self._logged: tuple[int, ...] = ()

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set. The store is opened first (its schema), then the source."""
        t = self.tuning
        backoff = Backoff(t.retry_first, t.retry_ceiling)
        await self._retry(self._open, stop, "store")
        while not stop.is_set():
            try:
                await self.source.connect()
            except SourceError as exc:
                self.metrics.health.source, self.metrics.health.detail = "down", str(exc)
                log.warning("ingest.source_down", source=self.source.name, error=str(exc))
                await _sleep(stop, backoff.next())
                continue
            backoff.reset()
            self.metrics.health.source = "connected"
            log.info("ingest.connected", source=self.source.name)
            try:
                await self._consume(stop)
            except SourceError as exc:
                self.metrics.health.source, self.metrics.health.detail = "down", str(exc)
                log.warning("ingest.source_lost", source=self.source.name, error=str(exc))
                await _sleep(stop, backoff.next())
            finally:
                await self.source.close()
        await self.store.close()

    async def _open(self) -> None:
        await self.store.open()
        await self.trust.seed()

    async def _consume(self, stop: asyncio.Event) -> None:
        """Decoding the next batch overlaps the database's work on the one before; batches
        still commit and are acknowledged one after the other, in order."""
        t = self.tuning
        pending: asyncio.Future[None] | None = None
        try:
            while not stop.is_set():
                batch = await self.source.receive(t.max_batch, t.linger, t.wait)
                if batch:
                    verdicts = await self._retry(
                        functools.partial(self._decode, batch), stop, "store"
                    )
                    if verdicts is None:
                        break  # stopped while the store failed: unacknowledged, it comes again
                    decoded, rejected = verdicts
                    if pending is not None:
                        await pending
                    pending = asyncio.ensure_future(
                        self._commit(batch, decoded, rejected, time.perf_counter(), stop)
                    )
                elif pending is not None:
                    await pending
                    pending = None
                await self._refresh()
        finally:
            if pending is not None:
                await pending

    async def _decode(self, batch: list[Delivery]) -> tuple[list[Decoded], list[Rejected]]:
        """Verify a batch (the store is asked about keys this worker has not bound)."""
        decoded: list[Decoded] = []
        rejected: list[Rejected] = []
        outcomes = await self.trust.decode([(d.topic, d.payload) for d in batch])
        for outcome in outcomes:
            if isinstance(outcome, Decoded):
                decoded.append(outcome)
            elif isinstance(outcome, Rejected):
                rejected.append(outcome)
                self.metrics.refused(outcome.reason)
            elif isinstance(outcome, Ignored):
                self.metrics.messages.labels("ignored").inc()
        return decoded, rejected

    async def _commit(self, batch: list[Delivery], decoded: list[Decoded],
                      rejected: list[Rejected], started: float,
                      stop: asyncio.Event) -> None:  # fmt: skip
        report = await self._retry(lambda: self.store.write(decoded, rejected), stop, "store")
        if report is None:
            return  # stopped before it committed: not acknowledged, it comes again
        await self.source.ack(batch)
        newest = max((m.ts for m in decoded), default=None)
        self.metrics.stored(report, newest)
        self.metrics.batch.observe(time.perf_counter() - started)
        self.total.add(report)
        for gateway, (first, last) in report.opened:
            log.info("ingest.hole", gateway=gateway, first=first, last=last)
        if self.on_batch is not None:
            self.on_batch(report)

    async def _retry(self, attempt: Callable[[], Awaitable[T]], stop: asyncio.Event,
                        what: str) -> T | None:  # fmt: skip
        t = self.tuning
        backoff = Backoff(t.retry_first, t.retry_ceiling)
        while not stop.is_set():
            try:
                return await attempt()
            except StoreError as exc:
                self.metrics.health.store, self.metrics.health.detail = "failing", str(exc)
                log.warning("ingest.store_failing", what=what, error=str(exc))
                await _sleep(stop, backoff.next())
        return None

    async def _refresh(self) -> None:
        now = time.monotonic()
        if now < self._next_totals:
            return
        self._next_totals = now + self.tuning.totals_every
        try:
            totals = await self.store.totals()
        except StoreError as exc:  # the database is gone even while nothing arrives
            self.metrics.health.store, self.metrics.health.detail = "failing", str(exc)
            return
        self.metrics.health.store = "ok"
        lag = await self.source.lag()
        self.metrics.totals(totals, lag)
        t = self.total
        mark = (t.messages, t.duplicates, t.rejected, totals.holes)
        if mark == self._logged:
            return  # nothing new: an idle worker stays quiet
        self._logged = mark
        log.info("ingest.progress", stored=t.messages, readings=t.readings,
                 duplicates=t.duplicates, rejected=t.rejected, holes=totals.holes,
                 missing=totals.missing, lag=lag,
                 readings_per_s=round(self.metrics.health.readings_per_s))  # fmt: skip


async def _sleep(stop: asyncio.Event, delay: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
