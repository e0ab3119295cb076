"""When the uplink tries the broker again (docs/outbox.md, "First live reading").

Three cases, told apart by how the last attempt ended:

- the broker was unreachable (no TCP, a timeout): jittered backoff up to
  `reconnect_max`, cut short by a bare TCP connect every ~0.5 s that notices the
  broker's return within a second — a refused SYN costs a down broker nothing, where
  a full MQTT (and TLS) attempt per second from every gateway would not;
- the broker answered and refused us (credentials, ACL, TLS): the full backoff, no
  probe: it is there, and hammering it changes nothing;
- a *flap*: the session came up and was dropped within `STABLE_SESSION_S`
  (RabbitMQ 3.10 closes the connection when a full queue refuses a publish; another
  client with our id). The broker is listening, so the probe would reconnect at
  once, forever: flaps get a backoff of their own, reset by a session that lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Final, NamedTuple

from cityedge.sdk.backoff import Backoff

PROBE_INTERVAL: Final = 0.5  # s between TCP probes of a broker that went away
STABLE_SESSION_S: Final = 10.0  # a session shorter than this was a flap


class Retry(NamedTuple):
    delay: float  # s before the next attempt, at most
    probe: bool  # cut short when a TCP connect to the broker succeeds
    flap: bool  # the session before was dropped early


class Reconnect:
    """The reconnect policy of one uplink: `after()` says how to wait, `wait()` waits."""

    def __init__(self, host: str, port: int, low: float, high: float) -> None:
        self.host, self.port = host, port
        self._backoff = Backoff(low, max(low, high), full_jitter=True)
        self._flaps = Backoff(low, max(low, high), full_jitter=True)

    def after(self, up_for: float | None, *, answered: bool) -> Retry:
        """How to wait after an attempt: `up_for` is how long its session was up (None:
        it never came up); `answered`: the broker itself refused us."""
        if up_for is not None and up_for < STABLE_SESSION_S:
            return Retry(self._flaps.next(), probe=False, flap=True)
        if up_for is not None:  # it worked, for a while: start again from the shortest
            self._backoff.reset()
            self._flaps.reset()
        return Retry(self._backoff.next(), probe=not answered, flap=False)

    async def wait(self, retry: Retry, stop: asyncio.Event) -> bool:
        """Wait `retry.delay` s, less when probing finds the broker back; True when the
        broker was found back early, False when the time ran out or `stop` was set."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + retry.delay
        while (left := deadline - loop.time()) > 0:
            step = min(left, PROBE_INTERVAL * random.uniform(0.5, 1.5)) if retry.probe else left
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(step):
                    await stop.wait()
                    return False
            if retry.probe and await self._listening():
                return True
        return False

    async def _listening(self) -> bool:
        try:
            async with asyncio.timeout(PROBE_INTERVAL * 2):
                _, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
