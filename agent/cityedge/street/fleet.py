"""Simulated gateways for ingest tests and the fleet benchmark: the project's own
entry encoding and sealing, realistic content (one reading per lamppost point), and a
publisher that keeps every message until the broker's PUBACK, as the agent's outbox
does, over MQTT 3.1.1 (RabbitMQ's and NATS's MQTT listeners speak no MQTT 5).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiomqtt

from cityedge.protocol.entries import reading_entry
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.sealing import message_sealer
from cityedge.protocol.topics import DEFAULT_PREFIX, topic_for
from cityedge.sdk.model import Reading

LAMP_POINTS = (("power", "W"), ("energy", "kWh"), ("dimming", "%"), ("lamp_on", None))


@dataclass
class SimulatedGateway:
    key: SigningKey
    gateway: str
    site: str
    lampposts: int
    prefix: str = DEFAULT_PREFIX
    seq: int = 0
    _energy: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._seal = message_sealer(self.key, gateway=self.gateway, site=self.site)
        self._energy = [random.uniform(100, 5000) for _ in range(self.lampposts)]

    @property
    def topic(self) -> str:
        return topic_for(self.prefix, self.site, self.gateway, "telemetry")

    def telemetry(self, ts: float) -> tuple[int, bytes]:
        """The next sealed telemetry message: every point of every lamppost at `ts`."""
        entries = []
        for i in range(self.lampposts):
            device = f"lamppost-{i + 1:03d}"
            self._energy[i] += 0.01
            values = (round(random.uniform(20, 90), 1), round(self._energy[i], 3),
                      random.choice((40, 70, 100)), True)  # fmt: skip
            for (point, unit), value in zip(LAMP_POINTS, values, strict=True):
                entries.append(reading_entry(Reading(device, point, value, ts, unit)))
        self.seq += 1
        payload = self._seal(kind="telemetry", seq=self.seq, historical=False,
                             entries=b"".join(entries), count=len(entries))  # fmt: skip
        return self.seq, payload


async def publish_reliably(
    host: str,
    port: int,
    messages: Sequence[tuple[str, bytes]],
    *,
    client_id: str,
    window: int = 32,
    deadline: float = 120.0,
) -> int:
    """Publish every (topic, payload) at QoS 1 and return once each was PUBACKed; after a
    lost connection, everything not yet acknowledged is sent again (duplicates are the
    receiver's business). Returns how many reconnects it took. Bounded by `deadline`."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    acked = [False] * len(messages)
    reconnects = 0
    while not all(acked):
        if loop.time() > end:
            raise TimeoutError(f"{acked.count(False)} messages not acknowledged in {deadline}s")
        try:
            async with aiomqtt.Client(
                host, port, identifier=client_id, protocol=aiomqtt.ProtocolVersion.V311,
                clean_session=False, timeout=10, max_inflight_messages=window,
            ) as client:  # fmt: skip
                todo = [i for i, done in enumerate(acked) if not done]
                for start in range(0, len(todo), window):
                    chunk = todo[start : start + window]
                    await asyncio.gather(*(client.publish(*messages[i], qos=1) for i in chunk))
                    for i in chunk:
                        acked[i] = True
        except (aiomqtt.MqttError, OSError):
            reconnects += 1
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.3)
    return reconnects
