"""Mosquitto (any MQTT v5 broker) as a durable source: a persistent session under a
fixed client id, QoS 1, PUBACK only once the batch is stored.

The session (clean start off, a long session expiry) makes the broker keep what
arrives for ingest while it is away — up to the broker's `max_queued_messages` —
and send again whatever was delivered but not acknowledged. paho's manual
acknowledgement (`manual_ack_set`, pinned paho 2.2 internals, as the gateway's
command intake uses them) holds every PUBACK until `ack`; the broker sends at most
Receive Maximum unacknowledged messages, which is the backpressure.

A message id is only meaningful on the connection that delivered it: a delivery
from an earlier connection is never acknowledged on a later one (the broker sends
it again instead, and the store drops the copy).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cityedge.central.ingest.sources.base import Delivery, SourceError, mqtt_filters
from cityedge.central.link import PASSWORD_ENV, BrokerUrl
from cityedge.protocol.topics import DEFAULT_PREFIX

SESSION_EXPIRY = 7 * 24 * 3600  # the broker keeps our queue through a week-long outage
RECEIVE_MAXIMUM = 1000


class MosquittoSource:
    name = "mqtt"

    def __init__(self, url: BrokerUrl, *, client_id: str, prefix: str = DEFAULT_PREFIX,
                 site: str | None = None, connect_timeout: float = 10.0) -> None:  # fmt: skip
        self.url = url
        self.client_id = client_id
        self.filters = mqtt_filters(prefix, site)
        self.connect_timeout = connect_timeout
        self._client: aiomqtt.Client | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._generation = 0

    async def connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        client = aiomqtt.Client(
            self.url.host, self.url.port,
            username=self.url.username,
            password=os.environ.get(PASSWORD_ENV) if self.url.username else None,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=props,
            timeout=self.connect_timeout,
            keepalive=30,
        )  # fmt: skip
        client._client.manual_ack_set(True)
        stack = contextlib.AsyncExitStack()
        try:
            await stack.enter_async_context(client)
            for topic in self.filters:
                await client.subscribe(topic, qos=1, timeout=self.connect_timeout)
        except aiomqtt.MqttError as exc:
            await stack.aclose()
            raise SourceError(f"mqtt {self.url}: {exc}") from None
        self._generation += 1
        self._client, self._stack = client, stack

    def _live(self) -> aiomqtt.Client:
        client = self._client
        if client is None:
            raise SourceError(f"mqtt {self.url}: not connected")
        if client._disconnected.done():
            raise SourceError(f"mqtt {self.url}: connection lost")
        return client

    async def receive(self, max_batch: int, linger: float, wait: float) -> list[Delivery]:
        client = self._live()
        queue = client._queue
        lost = client._disconnected
        got = asyncio.ensure_future(queue.get())
        try:
            waiting: list[asyncio.Future[Any]] = [got, lost]
            await asyncio.wait(waiting, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not got.done():
                got.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await got
        if not got.done() or got.cancelled():
            if lost.done():
                raise SourceError(f"mqtt {self.url}: connection lost")
            return []
        messages = [got.result()]
        deadline = asyncio.get_running_loop().time() + linger
        while len(messages) < max_batch:
            if queue.empty():
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0 or lost.done():
                    break
                with contextlib.suppress(TimeoutError):
                    messages.append(await asyncio.wait_for(queue.get(), min(left, 0.01)))
                continue
            messages.append(queue.get_nowait())
        return [
            Delivery(str(m.topic), bytes(m.payload) if isinstance(m.payload, bytes | bytearray)
                     else b"", (self._generation, m.mid, m.qos))
            for m in messages
        ]  # fmt: skip

    async def ack(self, batch: Sequence[Delivery]) -> None:
        client = self._live()
        for delivery in batch:
            generation, mid, qos = delivery.token
            if generation == self._generation and qos > 0:
                client._client.ack(mid, qos)

    async def lag(self) -> int | None:
        return None  # MQTT cannot tell how much waits in our session

    async def close(self) -> None:
        stack, client, self._stack, self._client = self._stack, self._client, None, None
        lost = None if client is None else client._disconnected
        if lost is not None and lost.done() and not lost.cancelled():
            lost.exception()  # seen: the reconnect loop has already logged why
        if stack is not None:
            with contextlib.suppress(aiomqtt.MqttError, OSError):
                await stack.aclose()
