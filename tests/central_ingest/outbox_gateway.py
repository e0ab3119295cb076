"""A gateway made of the agent's own outbox (`cityedge.gateway.outbox.Outbox`: sealing,
sequence numbers, delete-on-PUBACK) drained over MQTT 3.1.1 at QoS 1, for the engines
whose MQTT listener speaks no MQTT 5 (the agent's uplink does)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt

from cityedge.gateway.outbox import Entry, Outbox
from cityedge.gateway.runtime import outbox_event
from cityedge.protocol.entries import reading_entry
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.sealing import message_sealer
from cityedge.protocol.topics import topic_for
from cityedge.sdk.model import Reading


class OutboxGateway:
    def __init__(self, path: Path, key: SigningKey, *, gateway: str, site: str, prefix: str,
                 max_age: float = 10 * 365 * 86400.0) -> None:  # fmt: skip
        self.key, self.gateway, self.site, self.prefix = key, gateway, site, prefix
        seal = message_sealer(key, gateway=gateway, site=site)
        self.outbox = Outbox.open(
            path, seal=seal, max_bytes=64 << 20,
            max_age=max_age,  # the tests date readings in 2026-09: by default never evicted
            chunk_entries=25,  # many messages: their sequence matters
            event_encoder=outbox_event,  # as the agent opens it
        )  # fmt: skip
        self.readings = 0

    def take(self, count: int, ts0: float) -> None:
        """`count` readings of 20 lampposts into the outbox, committed (sealed)."""
        self.outbox.add([
            Entry("telemetry", 1, ts0 + i, reading_entry(
                Reading(f"lamppost-{i % 20:03d}", "power", float(i), ts0 + i, "W")))
            for i in range(count)
        ])  # fmt: skip
        self.outbox.commit()
        self.readings += count

    async def drain(self, host: str, port: int, *, deadline: float = 150.0) -> None:
        """Publish until the outbox is empty, each message deleted only on its PUBACK;
        a lost connection sends everything unacknowledged again (as the uplink does)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while True:
            if loop.time() > end:
                raise TimeoutError(f"outbox of {self.gateway} not drained in {deadline}s")
            try:
                async with aiomqtt.Client(
                    host, port, identifier=f"{self.site}-{self.gateway}", clean_session=False,
                    protocol=aiomqtt.ProtocolVersion.V311, timeout=10,
                ) as client:  # fmt: skip
                    last = self.outbox.last_seq()
                    while m := self.outbox.next_message(live_after=last, backlog=True):
                        topic = topic_for(self.prefix, self.site, self.gateway, m.kind)
                        await client.publish(topic, m.payload, qos=1)
                        self.outbox.ack([m])
                    self.outbox.commit()
                    return
            except aiomqtt.MqttError:
                self.outbox.release()
                await asyncio.sleep(0.3)

    def close(self) -> None:
        self.outbox.close()
