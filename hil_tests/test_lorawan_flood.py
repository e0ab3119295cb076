"""The forwarder-EUI flood of issue 19 against the real agent: 100,000 GWMP datagrams
from as many made-up gateway EUIs over loopback UDP, while a listed forwarder goes on
sending a sensor's frames. Before the fix this took the agent from 42 to 163 MB and
made 55,569 `forwarder-<EUI>` devices. Now: the agent's RSS stays flat, no stranger
becomes a device, and every frame of the listed forwarder arrives verified.

Rows go to the reliability table (CITYEDGE_WRITE_RELIABILITY=1 regenerates
docs/reliability.md): produced = the listed forwarder's frames during the flood,
delivered = those verified at the command post, lost = the difference."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from cityedge.drivers.lorawan.semtech import push_data, rxpk_json
from hil_tests.fault_site import SCALE, Row, record
from hil_tests.test_lorawan import BIN
from tests.lorawan.site import FORWARDERS, LoRaSite, lorawan_site

pytestmark = pytest.mark.timeout(600)

FLOOD = 100_000 * SCALE
BATCH = 200  # datagrams between two yields: the agent reads while the flood goes on


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def flood(port: int, count: int, frame: bytes) -> None:
    rxpk = [rxpk_json(frame, rssi=-90, lsnr=5)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for n in range(count):
            datagram = push_data(n & 0xFFFF, f"DE{n:014X}", rxpk, {"rxnb": n})
            try:
                sock.sendto(datagram, ("127.0.0.1", port))
            except BlockingIOError:
                await asyncio.sleep(0.005)  # our own send buffer is full: let it drain
            if n % BATCH == 0:
                await asyncio.sleep(0.001)


async def frames_during(site: LoRaSite, flooding: asyncio.Task[None]) -> tuple[int, int]:
    """The listed forwarder's frames, one every 50 ms while the flood lasts; (sent, acked)."""
    sent = acked = 0
    async with site.forwarder(0) as fwd:
        while not flooding.done() or sent == 0:
            acked += await fwd.uplink(site.frame(BIN))
            sent += 1
            await asyncio.sleep(0.05)
    return sent, acked


@pytest.mark.parametrize("listed", [True, False], ids=["listed", "no-list"])
async def test_forwarder_eui_flood_memory_bounded(tmp_path: Path, listed: bool) -> None:
    forwarders = FORWARDERS if listed else []
    async with lorawan_site(tmp_path, [BIN], forwarders=forwarders) as site:
        async with site.forwarder(0) as fwd:
            assert await fwd.keepalive()  # heard first: its place is kept without a list too
            assert await fwd.uplink(site.frame(BIN))
        assert await site.wait_delivered(1), site.agent.logs()[-3000:]
        await asyncio.sleep(1.0)  # settle: the first frame's work and logs are done
        before = rss_mb(site.agent_pid)
        started = time.monotonic()
        flooding = asyncio.create_task(flood(site.port, FLOOD, bytes(range(20))))
        sent, acked = await frames_during(site, flooding)
        await flooding
        took = time.monotonic() - started
        delivered_ok = await site.wait_delivered(1 + sent, timeout=60)
        after = rss_mb(site.agent_pid)
        devices = await asyncio.to_thread(site.devices)
        logs = site.agent.logs()
    invented = sorted(d for d in devices if d.startswith("forwarder-DE"))
    kept = sorted(d for d in devices if d.startswith("forwarder-"))
    delivered = site.delivered() - 1
    refusal = "unknown-forwarder" if listed else "too-many-forwarders"
    scenario = "forwarder-EUI flood (memory bounded)" if listed else (
        "forwarder-EUI flood, no forwarders listed (memory bounded)")  # fmt: skip
    record(Row(scenario, sent, delivered, 0, sent - delivered, 0.0,
               f"{FLOOD} datagrams sent from {FLOOD} made-up gateway EUIs in {took:.0f} s, refused "
               f"({refusal}); {len(kept)} forwarder devices ({len(invented)} made-up); "
               f"{acked} of {sent} frames of the listed forwarder acknowledged; "
               f"agent RSS {before:.0f} -> {after:.0f} MB"))  # fmt: skip
    assert delivered_ok and delivered == sent and acked == sent
    if listed:
        assert not invented
    else:  # the bench setting: the first 8 EUIs heard, the listed forwarder among them
        assert len(kept) <= 8 and f"forwarder-{FORWARDERS[0]}" in kept
    assert after - before < 15, (before, after)
    assert logs.count("lorawan.datagram.dropped") < 10  # first loudly, then counted
