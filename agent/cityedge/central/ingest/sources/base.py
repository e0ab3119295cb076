"""What every source offers the service loop: batches of deliveries, acknowledged later.

A source yields a batch as soon as one delivery is there, with whatever else
arrived within `linger` (up to `max_batch`); the loop stores it and then calls
`ack` with the same batch. A delivery that is never acknowledged — the process
died, the store failed — comes again from the engine (at-least-once); the store's
(gateway, seq) key makes the second copy harmless.

Topics are always the gateway's MQTT topic (`cityedge/v2/<site>/<gateway>/<kind>`):
an engine that maps them to routing keys or subjects maps them back here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cityedge.protocol.topics import ANY, DEFAULT_PREFIX, topic_for

# Kinds the gateways publish (commands on the bus are the command post's own).
GATEWAY_KINDS = ("telemetry", "event", "result", "state")


@dataclass(frozen=True, slots=True)
class Delivery:
    topic: str
    payload: bytes
    token: Any  # what the source needs to acknowledge it


class SourceError(Exception):
    """The engine cannot be reached or refused the setup."""


class Source(Protocol):
    name: str

    async def connect(self) -> None:
        """Connect and declare what must exist (queue, stream, subscription)."""
        ...

    async def receive(self, max_batch: int, linger: float, wait: float) -> list[Delivery]:
        """The next batch, or [] after `wait` seconds without any."""
        ...

    async def ack(self, batch: Sequence[Delivery]) -> None:
        """Acknowledge a stored batch (the engine forgets it)."""
        ...

    async def lag(self) -> int | None:
        """Messages waiting in the engine for ingest, when the engine can tell."""
        ...

    async def close(self) -> None: ...


def mqtt_filters(prefix: str = DEFAULT_PREFIX, site: str | None = None) -> list[str]:
    """The MQTT topic filters of what ingest takes: every gateway kind, of one site or all."""
    return [topic_for(prefix, site or ANY, ANY, kind) for kind in GATEWAY_KINDS]


def to_dotted(topic: str) -> str:
    """MQTT topic -> AMQP routing key / NATS subject, as RabbitMQ's and NATS's MQTT
    bridges map it ('/' and '.' swap; ids never contain '.')."""
    return topic.translate(_SWAP)


def from_dotted(key: str) -> str:
    return key.translate(_SWAP)


_SWAP = str.maketrans({"/": ".", ".": "/"})


def dotted_filters(prefix: str = DEFAULT_PREFIX, site: str | None = None) -> list[str]:
    """`mqtt_filters` as AMQP binding keys ('+' is '*'; NATS uses the same)."""
    return [to_dotted(f).replace("+", "*") for f in mqtt_filters(prefix, site)]
