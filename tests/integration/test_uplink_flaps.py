"""A broker that accepts the gateway and drops it at once (RabbitMQ 3.10 does so when a
full queue refuses a publish; a second gateway with our client id does it on any
broker): the uplink backs off between such flaps instead of reconnecting every half
second forever, and still connects as soon as a working broker is there.

The hostile broker is a real TCP server on loopback that answers CONNECT with a
successful CONNACK and hangs up; the working one is a real Mosquitto on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from cityedge.gateway.config import GatewaySection, UplinkSection
from cityedge.gateway.outbox import Outbox
from cityedge.gateway.reconnect import STABLE_SESSION_S, Reconnect
from cityedge.gateway.uplink import LinkState, Uplink
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.sealing import message_sealer
from cityedge.street.broker import Broker, free_port

KEY = SigningKey.from_seed(bytes(range(32)))
CONNACK_V5 = bytes([0x20, 0x03, 0x00, 0x00, 0x00])  # session not present, success, no props


class DroppingBroker:
    """Accepts MQTT connections, says yes, and closes them; counts them."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.accepted = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> DroppingBroker:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError):
            async with asyncio.timeout(5):
                if (await reader.readexactly(1))[0] >> 4 == 1:  # CONNECT
                    length, shift = 0, 0
                    for _ in range(4):  # the remaining length: up to 4 bytes, 7 bits each
                        byte = (await reader.readexactly(1))[0]
                        length |= (byte & 0x7F) << shift
                        shift += 7
                        if not byte & 0x80:
                            break
                    await reader.readexactly(length)
                    self.accepted += 1
                    writer.write(CONNACK_V5)
                    await writer.drain()
        writer.close()


async def test_a_broker_that_drops_us_at_once_is_retried_ever_more_calmly(
    tmp_path: Path,
) -> None:
    port = free_port()
    gateway = GatewaySection(id="gw-flap", site="town-01", state_dir=tmp_path / "state")
    config = UplinkSection(host="127.0.0.1", port=port, reconnect_min=0.5, reconnect_max=4.0)
    outbox = Outbox.open(
        tmp_path / "state" / "outbox.db", seal=message_sealer(KEY, gateway="gw-flap",
        site="town-01"), max_bytes=1 << 24, max_age=1e6,
    )  # fmt: skip
    uplink = Uplink(config, gateway, outbox, KEY, birth=dict)
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(uplink.run())
    try:
        async with DroppingBroker(port) as hostile:
            async with asyncio.timeout(30):
                while hostile.accepted < 1:  # noqa: ASYNC110 (a bounded wait on a count)
                    await asyncio.sleep(0.05)
            start, first = loop.time(), hostile.accepted
            await asyncio.sleep(10.0)  # a window to count in, not a verdict on speed
            window = loop.time() - start
            flapped = hostile.accepted - first
        # Reconnecting at once (the TCP probe finds the port open) made ~13 in 10 s;
        # delays of 0.5, <=1, <=2, <=4, <=4 s... make at most ~7 (a slow machine: fewer).
        assert flapped <= 9, (flapped, window)
        assert uplink.stats.flaps == uplink.stats.connects >= 2, uplink.stats  # every one a flap
        # A working broker on the same port: connected within the longest flap delay.
        with Broker(workdir=tmp_path / "broker", port=port):
            async with asyncio.timeout(30):
                while uplink.stats.state is not LinkState.UP:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
    finally:
        await uplink.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        outbox.close()


def test_the_policy_tells_outages_refusals_and_flaps_apart() -> None:
    retries = Reconnect("127.0.0.1", 1, low=0.5, high=8.0)
    unreachable = retries.after(None, answered=False)
    assert unreachable.probe and not unreachable.flap and unreachable.delay == 0.5
    refused = retries.after(None, answered=True)
    assert not refused.probe and 0.5 <= refused.delay <= 1.0
    flaps = [retries.after(STABLE_SESSION_S / 10, answered=False) for _ in range(6)]
    assert all(f.flap and not f.probe for f in flaps)
    assert all(0.5 <= f.delay <= min(8.0, 0.5 * 2**i) for i, f in enumerate(flaps))
    lasted = retries.after(STABLE_SESSION_S, answered=False)  # a session that lasted
    assert not lasted.flap and lasted.probe and lasted.delay == 0.5  # both backoffs reset
    assert retries.after(1.0, answered=False).delay == 0.5  # the first flap again
