"""RabbitMQ as a durable source: the gateways publish over its MQTT plugin, which
routes each QoS 1 message to the `amq.topic` exchange ('/' in the topic becomes '.');
ingest consumes a durable QUORUM queue bound to the gateways' routing keys, over AMQP.

Manual acknowledgements after the batch committed; `prefetch` bounds what one
worker holds unacknowledged (backpressure); any number of workers consume the same
queue as competing consumers. The queue must exist before gateways publish (a
message that matches no binding is confirmed and dropped): `connect` declares it,
and `cityedge central ingest --declare-only` does just that.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import aio_pika
import aio_pika.abc
import aiormq

from cityedge.central.ingest.sources.base import Delivery, SourceError, dotted_filters, from_dotted
from cityedge.protocol.topics import DEFAULT_PREFIX

MQTT_EXCHANGE = "amq.topic"  # where rabbitmq_mqtt publishes (its default `exchange`)
ERRORS = (aio_pika.exceptions.AMQPError, aiormq.exceptions.AMQPError, OSError,
          ConnectionError, asyncio.TimeoutError, RuntimeError)  # fmt: skip


def queue_name(site: str | None) -> str:
    return f"cityedge-ingest-{site}" if site else "cityedge-ingest"


class RabbitSource:
    name = "amqp"

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, site: str | None = None,
                 prefetch: int = 2000, queue: str | None = None) -> None:  # fmt: skip
        self.url = url
        self.keys = dotted_filters(prefix, site)
        self.prefetch = prefetch
        self.queue_name = queue or queue_name(site)
        self._conn: aio_pika.abc.AbstractConnection | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self._inbox: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        self._tag: str | None = None

    async def connect(self) -> None:
        try:
            conn = await aio_pika.connect(self.url, timeout=15)
        except ERRORS as exc:
            raise SourceError(f"amqp: {exc}") from None
        try:
            channel = await conn.channel(publisher_confirms=False)
            await channel.set_qos(prefetch_count=self.prefetch)
            queue = await channel.declare_queue(
                self.queue_name, durable=True, arguments={"x-queue-type": "quorum"}
            )
            exchange = await channel.get_exchange(MQTT_EXCHANGE, ensure=False)
            for key in self.keys:
                await queue.bind(exchange, routing_key=key)
            self._inbox = asyncio.Queue()
            self._tag = await queue.consume(self._inbox.put, no_ack=False)
        except ERRORS as exc:
            await conn.close()
            raise SourceError(f"amqp: {exc}") from None
        self._conn, self._queue = conn, queue

    async def declare(self) -> None:
        """Create the queue and its bindings, then disconnect."""
        await self.connect()
        await self.close()

    async def receive(self, max_batch: int, linger: float, wait: float) -> list[Delivery]:
        self._check()
        try:
            first = await asyncio.wait_for(self._inbox.get(), wait)
        except TimeoutError:
            self._check()
            return []
        messages = [first]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + linger
        while len(messages) < max_batch:
            if not self._inbox.empty():
                messages.append(self._inbox.get_nowait())
                continue
            left = deadline - loop.time()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                messages.append(await asyncio.wait_for(self._inbox.get(), min(left, 0.01)))
        return [Delivery(from_dotted(m.routing_key or ""), m.body, m) for m in messages]

    def _check(self) -> None:
        conn = self._conn
        # a lost connection clears `connected`; `is_closed` says only that close() ran
        if conn is None or conn.is_closed or not conn.connected.is_set():
            raise SourceError("amqp: connection lost")

    async def ack(self, batch: Sequence[Delivery]) -> None:
        if not batch:
            return
        last: Any = batch[-1].token
        try:
            # One ack for the batch: every earlier delivery on this channel is in it or
            # was acknowledged before (batches are handled one after the other).
            await last.ack(multiple=True)
        except ERRORS as exc:
            raise SourceError(f"amqp: ack failed ({exc}): the batch will come again") from None

    async def lag(self) -> int | None:
        try:
            self._check()
            assert self._conn is not None
            channel = await self._conn.channel()
            try:
                queue = await channel.declare_queue(self.queue_name, passive=True)
                count = queue.declaration_result.message_count
            finally:
                await channel.close()
        except (*ERRORS, SourceError):
            return None
        return int(count) if count is not None else None

    async def close(self) -> None:
        conn, self._conn, self._queue = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(*ERRORS):
                await conn.close()
