"""A command-post stand-in for tests: subscribes to a real broker and verifies
every message with the shipped verifier, keeping what it accepted."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiomqtt

from cityedge.central.verifier import Verdict, Verifier
from cityedge.protocol.keys import PublicKey
from cityedge.sdk.model import Event, Reading


@dataclass
class Received:
    reading: Reading
    arrived: float
    historical: bool
    seq: int


@dataclass
class CommandPost:
    port: int
    gateway_key: PublicKey
    prefix: str = "cityedge/v2"
    verdicts: list[Verdict] = field(default_factory=list)
    readings: list[Received] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    states: list[dict[str, object]] = field(default_factory=list)
    results: list[dict[str, object]] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    raw: dict[int, bytes] = field(default_factory=dict)  # payload by sequence number
    _task: asyncio.Task[None] | None = None
    _subscribed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.verifier = Verifier({self.gateway_key.key_id: self.gateway_key}, prefix=self.prefix)

    @property
    def rejected(self) -> list[Verdict]:
        return [
            v for v in self.verdicts if not v.accepted and v.reason not in ("duplicate", "stale")
        ]

    @property
    def duplicates(self) -> int:
        return sum(1 for v in self.verdicts if v.reason == "duplicate")

    async def _run(self) -> None:
        while True:
            try:
                # A persistent session: what the gateway sends while we reconnect
                # after a broker restart is queued for us, as for a real command post.
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self.port,
                    timeout=5,
                    identifier=f"command-post-{id(self)}",
                    clean_session=False,
                ) as client:
                    await client.subscribe(f"{self.prefix}/#", qos=1)
                    self._subscribed.set()
                    async for message in client.messages:
                        payload = message.payload
                        assert isinstance(payload, bytes)
                        self.take(str(message.topic), payload)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)  # the test restarts the broker: follow it

    def take(self, topic: str, payload: bytes) -> Verdict:
        verdict = self.verifier.verify(topic, payload)
        self.verdicts.append(verdict)
        msg = verdict.message
        if not verdict.accepted or msg is None:
            return verdict
        now = time.time()
        if msg.kind == "state":
            self.states.append(msg.state)
            return verdict
        self.seqs.append(msg.seq)
        self.raw[msg.seq] = payload
        for reading in msg.readings:
            self.readings.append(Received(reading, now, msg.historical, msg.seq))
        self.events.extend(msg.events)
        self.results.extend(dict(r) for r in msg.results)
        return verdict

    async def __aenter__(self) -> CommandPost:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._subscribed.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            await asyncio.sleep(0.1)
        return condition()

    def devices_seen(self) -> set[str]:
        return {r.reading.device for r in self.readings}
