"""Clock faults under the real agent: the wall clock jumping back and forward
during ingest, and a cold boot at 1970 followed by a clock sync (libfaketime).
Every reading must still be delivered, in order, and flagged only while the
clock is untrusted. Shares the site and the reliability table of test_faults.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cityedge.gateway.outbox.messages import CLOCK_FLOOR
from cityedge.sdk.model import Quality
from hil_tests.fault_site import SCALE, Row, Site, record, write_config
from tests.support.agent_process import ROOT as AGENT_ROOT
from tests.support.agent_process import AgentProcess, agent_env
from tests.support.outbox_probe import committed_readings as committed

pytestmark = pytest.mark.timeout(300 * SCALE)


# --- clock faults ----------------------------------------------------------------------
#
# The agent's wall clock is moved with libfaketime (Debian package `faketime`):
# preloaded into the agent subprocess only, it reads its offset from a file that the
# test rewrites; the monotonic clock (asyncio's timers, the outbox's age-check timer)
# stays real, as it does on a gateway whose RTC or NTP moves the wall clock.

LIBFAKETIME = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))), None)
needs_faketime = pytest.mark.skipif(
    LIBFAKETIME is None, reason="libfaketime not installed (scripts/setup.sh installs faketime)"
)


class FakeClock:
    """The wall clock the agent sees: a libfaketime spec ("+0", "-1h", "@1970-01-01 00:00:00")."""

    def __init__(self, path: Path, spec: str = "+0") -> None:
        self.path = path
        self.set(spec)

    def set(self, spec: str) -> None:
        # Written aside and renamed: the agent re-reads the file on every clock call
        # and must never see half a spec.
        scratch = self.path.with_name(self.path.name + ".new")
        scratch.write_text(spec + "\n")
        scratch.replace(self.path)

    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": str(LIBFAKETIME),
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }


class FakeClockAgent(AgentProcess):
    """The real agent, its wall clock under the test's control."""

    def __init__(self, config_path: Path, clock: FakeClock) -> None:
        super().__init__(config_path)
        self.clock = clock

    def start(self) -> FakeClockAgent:
        # libfaketime 0.9.10 also shifts Python's time.sleep (an absolute deadline on the
        # monotonic clock): it never returns at 1970 and fails with EINVAL under an
        # offset. subprocess.run's wait loop sleeps, so the clock watch could hang on
        # `timedatectl`; with nothing on PATH it asks the kernel (adjtimex) directly.
        no_programs = self.config_path.parent / "empty-path"
        no_programs.mkdir(exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cityedge.cli", "run", "-c", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=AGENT_ROOT,
            env={**agent_env(), **self.clock.env(), "PATH": str(no_programs)},
        )
        log.close()
        return self


def clock_untrusted(agent: AgentProcess) -> bool:
    """What the agent's clock watch concluded (its first `clock.state`, logged at start)."""
    for line in agent.logs().splitlines():
        if '"clock.state"' in line:
            return json.loads(line)["synchronised"] is False
    raise AssertionError(f"the agent never reported its clock state: {agent.logs()[-2000:]}")


def in_sequence_order(site: Site) -> list[tuple[int, float, float, Quality]]:
    """(seq, reading ts, arrival, quality), as the command post rebuilds the order."""
    rows = [(r.seq, r.reading.ts, r.arrived, r.reading.quality) for r in site.post.readings]
    return sorted(rows, key=lambda row: row[0])  # stable: order inside a message kept


def gapless(seqs: list[int]) -> bool:
    return bool(seqs) and sorted(seqs) == list(range(min(seqs), max(seqs) + 1))


def wrongly_flagged(readings: list[tuple[int, float, float, Quality]], untrusted: bool) -> int:
    """Readings whose flag disagrees with the rule: clock-unsynced when the system says
    the clock is not synchronised, or when the timestamp is before CLOCK_FLOOR."""
    bad = 0
    for _seq, ts, _arrived, quality in readings:
        expected = Quality.CLOCK_UNSYNCED if untrusted or ts < CLOCK_FLOOR else Quality.GOOD
        bad += quality is not expected
    return bad


async def watch_store(site: Site, seconds: float, must: set[tuple[str, str, float]]) -> None:
    """Collect every reading seen committed in the store during `seconds`."""
    for _ in range(max(1, int(seconds / 0.5))):
        await asyncio.sleep(0.5)
        must |= committed(site.db)


@needs_faketime
async def test_clock_jumps_back_and_forward_during_ingest(site: Site) -> None:
    clock = FakeClock(site.tmp / "faketime")
    must: set[tuple[str, str, float]] = set()
    agent = FakeClockAgent(site.config, clock)
    with agent:
        assert await site.post.wait_for(lambda: len(site.post.readings) > 50, 30)
        for spec in ("-1h", "+1d"):  # NTP stepping back an hour, then an RTC a day ahead
            clock.set(spec)
            await watch_store(site, 2.0 * SCALE, must)
        must |= committed(site.db) | site.delivered()
        back = time.monotonic()
        ok = await site.post.wait_for(lambda: must <= site.delivered(), 30)
        recover = time.monotonic() - back
        assert agent.running()
    readings = in_sequence_order(site)
    # Which clock each reading was taken on: its timestamp minus the real arrival time,
    # in hours (0, -1 or +24; delivery takes well under an hour).
    offsets = [round((ts - arrived) / 3600) for _seq, ts, arrived, _q in readings]
    rank = {0: 0, -1: 1, 24: 2}
    lost = len(must - site.delivered())
    flagged = sum(q is Quality.CLOCK_UNSYNCED for *_, q in readings)
    record(
        Row(
            f"wall clock -1 h, then +1 day, {2 * SCALE} s each, during ingest",
            len(must),
            len(site.delivered()),
            site.post.duplicates,
            lost,
            recover,
            f"sequence gapless and in poll order across both jumps; {flagged} of "
            f"{len(readings)} flagged clock-unsynced (system clock "
            f"{'not ' if clock_untrusted(agent) else ''}synchronised)",
        )
    )
    assert ok and lost == 0
    assert set(offsets) == {0, -1, 24}, sorted(set(offsets))
    # Delivery order is poll order: no reading from before a jump after one from after it.
    assert [rank[o] for o in offsets] == sorted(rank[o] for o in offsets)
    assert gapless(site.post.seqs) and len(set(site.post.seqs)) == len(site.post.seqs)
    assert site.post.rejected == []
    assert wrongly_flagged(readings, clock_untrusted(agent)) == 0
    # Each step was announced with its size, so the command post can re-stamp.
    steps = [e.data["offset"] for e in site.post.events if e.kind == "clock.stepped"]
    assert [round(s / 3600) for s in steps] == [-1, 25], steps


@needs_faketime
async def test_cold_boot_at_1970_then_clock_sync(site: Site) -> None:
    # A gateway without RTC boots in 1970, offline; NTP sets the clock later, and the
    # link comes back after that. A short max_age makes the store's age check run every
    # 2 s, so the test sees what a 30-day store does at its next check after the sync.
    config = write_config(site.tmp, site.broker.port, site.street, outbox={"max_age": 20.0})
    clock = FakeClock(site.tmp / "faketime", "@1970-01-01 00:00:00")
    must: set[tuple[str, str, float]] = set()
    site.broker.stop()
    agent = FakeClockAgent(config, clock)
    with agent:
        await watch_store(site, 3.0 * SCALE, must)
        clock.set("+0")  # NTP synchronised: the wall clock steps ~56 years forward
        await watch_store(site, 3.0, must)
        must |= committed(site.db)
        site.broker.start()
        back = time.monotonic()
        ok = await site.post.wait_for(lambda: must <= site.delivered(), 30)
        recover = time.monotonic() - back
        assert agent.running()
    readings = in_sequence_order(site)
    before_sync = [r for r in readings if r[1] < CLOCK_FLOOR]
    evicted = [
        e.data
        for e in site.post.events
        if e.kind == "outbox.evicted" and e.data["reason"] == "max-age"
    ]
    flagged = sum(r[3] is Quality.CLOCK_UNSYNCED for r in before_sync)
    lost = len(must - site.delivered())
    record(
        Row(
            f"cold boot at 1970 offline, clock synced after {3 * SCALE} s",
            len(must),
            len(site.delivered()),
            site.post.duplicates,
            lost,
            recover,
            f"{len(before_sync)} readings stamped 1970, {flagged} flagged clock-unsynced; "
            f"evicted by age: {sum(sum(e['counts'].values()) for e in evicted)}",
        )
    )
    assert before_sync, "no reading was taken on the 1970 clock"
    assert ok and lost == 0, evicted
    assert [r[1] >= CLOCK_FLOOR for r in readings] == sorted(r[1] >= CLOCK_FLOOR for r in readings)
    assert gapless(site.post.seqs) and min(site.post.seqs) == 1
    assert wrongly_flagged(readings, clock_untrusted(agent)) == 0
