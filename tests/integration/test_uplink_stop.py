"""Stopping the uplink (issue 19, item 9): with the broker down, a stop completes
promptly and leaves no task behind — the supervised uplink is not restarted after
it was told to stop, even when a cancel arrives while it is returning on its own.
In process, against a real port where nothing listens and a real Mosquitto."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from cityedge.gateway.config import GatewaySection, UplinkSection
from cityedge.gateway.outbox import Outbox
from cityedge.gateway.supervisor import TaskHealth, supervise
from cityedge.gateway.uplink import LinkState, Uplink
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.sealing import message_sealer
from cityedge.street.broker import Broker, free_port

KEY = SigningKey.from_seed(bytes(range(32)))


def make_uplink(tmp_path: Path, port: int) -> tuple[Uplink, Outbox]:
    gateway = GatewaySection(id="gw-test", site="town-01", state_dir=tmp_path / "state")
    config = UplinkSection(
        host="127.0.0.1", port=port, reconnect_min=0.2, reconnect_max=1.0, connect_timeout=3.0
    )
    outbox = Outbox.open(
        tmp_path / "state" / "outbox.db", seal=message_sealer(KEY, gateway="gw-test",
        site="town-01"), max_bytes=1 << 24, max_age=1e6,
    )  # fmt: skip
    return Uplink(config, gateway, outbox, KEY, birth=dict), outbox


async def stop_as_the_agent_does(uplink: Uplink, task: asyncio.Task[None]) -> float:
    """The runtime's order (gateway/runtime.py): stop(), then cancel, then wait."""
    started = time.monotonic()
    await uplink.stop()
    task.cancel()
    await asyncio.wait([task], timeout=10)
    return time.monotonic() - started


def others() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_stop_while_the_broker_is_down(tmp_path: Path) -> None:
    before = others()
    uplink, outbox = make_uplink(tmp_path, free_port())  # nothing listens there
    health = TaskHealth("uplink")
    for round_ in range(5):  # hit the retry wait at different points
        task = asyncio.create_task(supervise("uplink", uplink.run, health, min_delay=0.05))
        for _ in range(100):
            if uplink.stats.failures > round_:
                break
            await asyncio.sleep(0.05)
        assert uplink.stats.state is LinkState.DOWN
        await asyncio.sleep(0.05 * round_)
        took = await stop_as_the_agent_does(uplink, task)
        assert task.done() and task.cancelled(), (round_, health)
        assert took < 3.0, (round_, took)
        assert health.restarts == 0  # told to stop: never restarted
        assert others() <= before, others() - before
        uplink._stop.clear()  # the same object again, as after a reload
    outbox.close()


async def test_stop_while_connected(tmp_path: Path) -> None:
    before = others()
    with Broker(workdir=tmp_path / "broker") as broker:
        uplink, outbox = make_uplink(tmp_path, broker.port)
        task = asyncio.create_task(supervise("uplink", uplink.run, TaskHealth("uplink")))
        for _ in range(200):
            if uplink.stats.state is LinkState.UP:
                break
            await asyncio.sleep(0.05)
        assert uplink.stats.state is LinkState.UP
        took = await stop_as_the_agent_does(uplink, task)
        assert task.done() and took < 3.0
    await asyncio.sleep(0)  # let aiomqtt's socket callbacks run out
    assert others() <= before, others() - before
    outbox.close()


async def test_a_swallowed_cancel_still_stops_the_supervisor() -> None:
    """A task that catches the cancel and returns (as wait_for does on 3.11) is not
    restarted: the supervisor sees it was cancelled."""
    runs = 0
    started = asyncio.Event()

    async def swallowing() -> None:
        nonlocal runs
        runs += 1
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return  # the bug being guarded against

    health = TaskHealth("t")
    task = asyncio.create_task(supervise("t", swallowing, health, min_delay=0.01, max_delay=0.01))
    await started.wait()
    task.cancel()
    await asyncio.wait([task], timeout=3)
    assert task.cancelled()
    assert runs == 1 and health.restarts == 0
