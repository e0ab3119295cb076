"""Fault injection on the outbox's own files (issue 19): the real agent, simulated
lampposts, a private Mosquitto and the verifying command post of
`test_faults.py`, with the store emptied, its WAL deleted after kill -9, or its
filesystem full.

Each scenario writes its row of the reliability table (docs/reliability.md).
*Lost* counts committed readings the command post never verified; where the
damage destroys readings, the row says how the loss was reported: the
`outbox.corrupt` alarm names the sequence numbers (`first_seq`..`last_seq`) and
the entries by priority the store held, and the command post accounts for them.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from cityedge.gateway.outbox import stored_messages
from cityedge.protocol.readings import decode_block
from hil_tests.fault_site import Row, Site, record, write_config
from tests.support.agent_process import AgentProcess
from tests.support.outbox_probe import committed_readings as committed

Key = tuple[str, str, float]


def held(db: Path) -> dict[int, list[Key]]:
    """seq -> the readings of every telemetry message in the store (read-only)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out: dict[int, list[Key]] = {}
        for seq, kind, _prio, payload in stored_messages(conn):
            if kind == "telemetry":
                data = msgpack.unpackb(msgpack.unpackb(payload)["body"])["data"]
                out[seq] = [(r.device, r.point, r.ts) for r in decode_block(data)]
        return out
    finally:
        conn.close()


def kept(set_aside: str) -> bool:
    """The damaged file was set aside, not deleted."""
    return Path(set_aside).exists()


def corrupt_alarms(site: Site) -> list[dict[str, Any]]:
    return [dict(e.data) for e in site.post.events if e.kind == "outbox.corrupt"]


async def lose_the_store(site: Site, damage: str) -> tuple[dict[int, list[Key]], AgentProcess]:
    """Deliver, then buffer during an outage, then stop the agent (damage "empty":
    cleanly, and the store is emptied to 0 bytes; "wal": kill -9, and the WAL is
    deleted). Returns the messages the store held, and the agent, not running."""
    agent = AgentProcess(site.config).start()
    assert await site.post.wait_for(lambda: len(site.post.readings) > 50, 30)
    site.broker.stop()
    await asyncio.sleep(3)  # ~850 readings buffered
    if damage == "empty":
        agent.stop()
        before = held(site.db)
        site.db.write_bytes(b"")
    else:
        agent.kill9()
        before = held(site.db)  # the probe reads the WAL; it does not checkpoint it
        wal = site.db.with_name(site.db.name + "-wal")
        assert wal.stat().st_size > 0
        wal.unlink()
    return before, agent


async def recover(site: Site, agent: AgentProcess) -> tuple[dict[str, Any], float]:
    site.broker.start()
    started = time.monotonic()
    agent.start()
    try:
        ok = await site.post.wait_for(
            lambda: (
                bool(corrupt_alarms(site))
                and any(r.seq > corrupt_alarms(site)[0]["last_seq"] for r in site.post.readings)
            ),
            60,
        )
        recover_s = time.monotonic() - started
    finally:
        agent.stop()
    assert ok, agent.logs()[-3000:]
    [alarm] = corrupt_alarms(site)
    return alarm, recover_s


def check_reported(site: Site, before: dict[int, list[Key]], alarm: dict[str, Any]) -> int:
    """Every reading lost lies in the range the alarm named, and the alarm's count is
    what the store held in it. Returns the readings lost."""
    lost = {r for rs in before.values() for r in rs} - site.delivered()
    lost_seqs = {seq for seq, rs in before.items() if set(rs) & lost}
    first, last, top = alarm["first_seq"], alarm["last_seq"], alarm["held_last_seq"]
    assert lost_seqs <= set(range(first, last + 1)), (sorted(lost_seqs), alarm)
    in_range = sum(len(rs) for seq, rs in before.items() if first <= seq <= top)
    assert alarm["counts"].get("telemetry", 0) == in_range, (alarm, in_range)
    # The command post: nothing new dropped as a duplicate, no hole left unexplained.
    assert site.post.rejected == []
    assert site.post.verifier.missing() == []
    assert any(g.first <= first and last <= g.last for g in site.post.verifier.accounted())
    return len(lost)


async def test_a_0_byte_store(site: Site) -> None:
    before, agent = await lose_the_store(site, "empty")
    duplicates_before = site.post.duplicates
    alarm, recover_s = await recover(site, agent)
    assert alarm["reason"] == "store-empty" and kept(alarm["set_aside"])
    lost = check_reported(site, before, alarm)
    assert site.post.duplicates == duplicates_before  # the restart's messages all new
    record(
        Row(
            "0-byte store",
            sum(len(rs) for rs in before.values()),
            len(site.delivered()),
            site.post.duplicates,
            lost,
            recover_s,
            f"store emptied after a clean stop during an outage; all {lost} lost readings "
            f"reported: outbox.corrupt (store-empty) names seqs {alarm['first_seq']}-"
            f"{alarm['last_seq']} and {alarm['counts'].get('telemetry', 0)} telemetry "
            "entries; numbering resumed above the mark, nothing dropped as duplicate",
        )
    )


async def test_deleted_wal_after_kill9(site: Site) -> None:
    before, agent = await lose_the_store(site, "wal")
    duplicates_before = site.post.duplicates
    alarm, recover_s = await recover(site, agent)
    # store-lost: nothing had been checkpointed yet, the tables themselves were in the WAL
    assert alarm["reason"] in ("wal-lost", "store-lost")
    lost = check_reported(site, before, alarm)
    assert site.post.duplicates - duplicates_before <= 64  # resends of the in-flight window
    record(
        Row(
            "deleted WAL + kill -9",
            sum(len(rs) for rs in before.values()),
            len(site.delivered()),
            site.post.duplicates,
            lost,
            recover_s,
            f"all {lost} lost readings reported: outbox.corrupt ({alarm['reason']}) names "
            f"seqs {alarm['first_seq']}-{alarm['last_seq']} and "
            f"{alarm['counts'].get('telemetry', 0)} telemetry entries held there",
        )
    )


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_disk_full_during_an_outage(site: Site, small_fs: Path) -> None:
    """The store alone on a real 4 MiB tmpfs the test mounts (root; skipped otherwise):
    a page budget (`max_page_count`) would let the WAL grow and hide the failure, a
    real filesystem does not. Once the agent holds its reserve, a ballast file leaves
    ~300 KB, so the disk fills within seconds of the outage."""
    store = small_fs / "outbox.db"
    config = write_config(
        site.tmp, site.broker.port, site.street, outbox={"path": str(store),
                                                         "max_bytes": 32 << 20},
    )  # fmt: skip
    must: set[Key] = set()
    site.broker.stop()
    with AgentProcess(config) as agent:
        for _ in range(100):  # bounded: the agent opens its store within a few seconds
            if (small_fs / "outbox.db.reserve").exists():
                break
            await asyncio.sleep(0.1)
        assert (small_fs / "outbox.db.reserve").exists(), agent.logs()[-3000:]
        free = os.statvfs(small_fs).f_bavail * os.statvfs(small_fs).f_frsize
        (small_fs / "ballast").write_bytes(b"\0" * max(0, free - 300_000))
        for _ in range(120):  # bounded: the disk fills in a few seconds
            await asyncio.sleep(0.5)
            must |= committed(store)
            if '"outbox.disk_full"' in agent.logs():
                break
        assert '"outbox.disk_full"' in agent.logs(), agent.logs()[-3000:]
        full_at = time.time()
        for _ in range(10):  # 5 s on the full disk
            await asyncio.sleep(0.5)
            must |= committed(store)
        after_full = {r for r in must if r[2] > full_at}
        assert after_full, "nothing was committed after the disk filled"
        site.broker.start()
        back, back_wall = time.monotonic(), time.time()

        def settled() -> bool:
            kinds = {e.kind for e in site.post.events}
            live = any(r.reading.ts > back_wall for r in site.post.readings)
            return {"outbox.disk_full", "outbox.evicted"} <= kinds and live

        ok = await site.post.wait_for(settled, 60)
        recover_s = time.monotonic() - back
        # then the backlog: what is still in the store goes too
        await site.post.wait_for(lambda: committed(store) - site.delivered() == set(), 30)
        assert agent.running()
    assert ok, (sorted({e.kind for e in site.post.events}), len(site.post.readings))
    alarm = next(e for e in site.post.events if e.kind == "outbox.disk_full")
    assert alarm.data["active"] is True
    evicted = [e.data for e in site.post.events if e.kind == "outbox.evicted"]
    assert all(e["reason"] == "disk-full" for e in evicted)
    dropped = sum(e["counts"].get("telemetry", 0) for e in evicted)
    missing = must - site.delivered()
    unreported = {r for r in missing if not any(e["first_ts"] <= r[2] <= e["last_ts"]
                                                for e in evicted)}  # fmt: skip
    record(
        Row(
            "disk full during an outage (live data keeps flowing, eviction reported)",
            len(must),
            len(site.delivered()),
            site.post.duplicates,
            len(unreported),
            recover_s,
            f"{dropped} oldest telemetry readings evicted (disk-full), reported in "
            f"outbox.evicted; {len(after_full)} readings committed in the 5 s after the "
            "disk filled; live readings first after the outage",
        )
    )
    assert unreported == set()
    assert "Traceback" not in agent.logs()
