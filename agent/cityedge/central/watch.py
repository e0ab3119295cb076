"""Watch every gateway under a prefix: each message verified, each verdict handed on."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import aiomqtt
import structlog

from cityedge.central.link import BrokerError, BrokerUrl, as_broker_url, mqtt_client
from cityedge.central.verifier import Verdict, Verifier, as_verifier
from cityedge.protocol.keys import PublicKey
from cityedge.protocol.topics import DEFAULT_PREFIX, watch_filter

log = structlog.get_logger(__name__)

OnVerdict = Callable[[Verdict], Awaitable[None] | None]


def payload_bytes(payload: object) -> bytes:
    """aiomqtt hands bytes for every message a broker delivers; anything else is not ours."""
    return bytes(payload) if isinstance(payload, bytes | bytearray) else b""


async def watch(
    broker_url: str | BrokerUrl,
    trusted: Mapping[str, PublicKey] | Verifier,
    on_message: OnVerdict,
    *,
    prefix: str = DEFAULT_PREFIX,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[], None] | None = None,
    connect_timeout: float = 10.0,
    ca_file: Path | None = None,
    session: str | None = None,
) -> None:
    """Subscribe to `<prefix>/+/+/#` and call `on_message` with the verdict on each
    message (accepted, duplicate, rejected or skipped) until `stop` is set.

    `connect_timeout` bounds connecting and subscribing; waiting for messages is bounded
    by `stop`. Raises BrokerError if the broker cannot be reached or goes away.
    """
    url = as_broker_url(broker_url)
    verifier = as_verifier(trusted, prefix)
    stop = stop or asyncio.Event()
    try:
        async with mqtt_client(
            url, timeout=connect_timeout, ca_file=ca_file, role="watch", session=session
        ) as client:
            await client.subscribe(watch_filter(prefix), qos=1, timeout=connect_timeout)
            log.info("central.watching", broker=str(url), topics=watch_filter(prefix))
            if on_ready is not None:
                on_ready()
            await _deliver(client, verifier, on_message, stop)
    except aiomqtt.MqttError as exc:
        raise BrokerError(f"{url}: {exc}") from None


async def _deliver(
    client: aiomqtt.Client, verifier: Verifier, on_message: OnVerdict, stop: asyncio.Event
) -> None:
    messages = aiter(client.messages)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            incoming = asyncio.ensure_future(anext(messages))
            await asyncio.wait({incoming, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not incoming.done():
                incoming.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await incoming
                break
            message = incoming.result()
            verdict = verifier.verify(str(message.topic), payload_bytes(message.payload))
            handled = on_message(verdict)
            if inspect.isawaitable(handled):
                await handled
    finally:
        stopped.cancel()
