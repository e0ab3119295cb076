"""NATS JetStream as a durable source: the gateways publish over the server's MQTT
listener (topic `a/b/c` is subject `a.b.c`); a file-stored stream captures the
prefix's subjects and ingest reads it with a durable pull consumer, acknowledging
each message explicitly once its batch committed.

The stream keeps a message until ingest acknowledged it (work-queue retention), so
it also is the buffer through an ingest outage. Workers of one site (or of all)
share one durable consumer and split the load; `max_ack_pending` bounds what is in
flight (backpressure); a message not acknowledged within `ack_wait` comes again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import nats
import nats.errors
import nats.js.api as api
import nats.js.errors

from cityedge.central.ingest.sources.base import Delivery, SourceError, from_dotted, to_dotted
from cityedge.protocol.topics import DEFAULT_PREFIX

ERRORS = (nats.errors.Error, OSError, ConnectionError)


def stream_name(prefix: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in prefix).upper()


class NatsSource:
    name = "nats"

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, site: str | None = None,
                 max_ack_pending: int = 20_000, ack_wait: float = 60.0) -> None:  # fmt: skip
        self.url = url
        self.stream = stream_name(prefix)
        self.subjects = [to_dotted(prefix) + ".>"]
        self.filter = to_dotted(prefix) + (f".{site}.>" if site else ".>")
        self.durable = f"cityedge-ingest-{site}" if site else "cityedge-ingest"
        self.max_ack_pending = max_ack_pending
        self.ack_wait = ack_wait
        self._nc: Any = None
        self._sub: Any = None
        self._js: Any = None

    async def connect(self) -> None:
        try:
            nc = await nats.connect(self.url, connect_timeout=10, max_reconnect_attempts=0,
                                    allow_reconnect=False)  # fmt: skip
        except ERRORS as exc:
            raise SourceError(f"nats {self.url}: {exc}") from None
        try:
            js = nc.jetstream(timeout=10)
            config = api.StreamConfig(
                name=self.stream, subjects=self.subjects, storage=api.StorageType.FILE,
                retention=api.RetentionPolicy.WORK_QUEUE, discard=api.DiscardPolicy.NEW,
            )  # fmt: skip
            try:
                await js.add_stream(config)
            except nats.js.errors.BadRequestError:
                await js.update_stream(config)  # it exists, perhaps older settings
            consumer = api.ConsumerConfig(
                durable_name=self.durable, filter_subject=self.filter,
                ack_policy=api.AckPolicy.EXPLICIT, ack_wait=self.ack_wait,
                max_ack_pending=self.max_ack_pending, deliver_policy=api.DeliverPolicy.ALL,
            )  # fmt: skip
            self._sub = await js.pull_subscribe(
                self.filter, durable=self.durable, stream=self.stream, config=consumer
            )
        except ERRORS as exc:
            await nc.close()
            raise SourceError(f"nats {self.url}: {exc}") from None
        self._nc, self._js = nc, js

    async def declare(self) -> None:
        await self.connect()
        await self.close()

    def _live(self) -> Any:
        if self._nc is None or not self._nc.is_connected:
            raise SourceError(f"nats {self.url}: connection lost")
        return self._sub

    async def receive(self, max_batch: int, linger: float, wait: float) -> list[Delivery]:
        sub = self._live()
        try:
            msgs = await sub.fetch(max_batch, timeout=max(wait, 0.05))
        except nats.errors.TimeoutError:
            self._live()
            return []
        except ERRORS as exc:
            raise SourceError(f"nats {self.url}: {exc}") from None
        return [Delivery(from_dotted(m.subject), m.data, m) for m in msgs]

    async def ack(self, batch: Sequence[Delivery]) -> None:
        self._live()
        try:
            for delivery in batch:
                await delivery.token.ack()
            await self._nc.flush(timeout=10)
        except ERRORS as exc:
            raise SourceError(f"nats {self.url}: ack failed ({exc})") from None

    async def lag(self) -> int | None:
        if self._sub is None or self._nc is None or not self._nc.is_connected:
            return None
        try:
            info = await self._sub.consumer_info()
        except ERRORS:
            return None
        return int(info.num_pending or 0)

    async def close(self) -> None:
        nc, self._nc, self._sub = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(*ERRORS):
                await nc.close()
