"""Fault injection: the real agent, simulated lampposts, a private Mosquitto, and
a verifying command post — under kill -9, broker crashes, refused logins, a
stalled broker, a full store and a flooding device.

For every scenario the suite counts readings produced (polls counted at the
simulated devices x points, every poll reported: full_report_interval ~ 0),
delivered (distinct readings verified at the command post), duplicated (the same
sequence number again, before dedupe) and lost (committed but never delivered:
must be 0), and the time to recover. The table goes to
test-artifacts/reliability.json; with CITYEDGE_WRITE_RELIABILITY=1 it also
regenerates docs/reliability.md. CI-sized by default; CITYEDGE_SOAK=1 multiplies
the kill count and durations by ten (CITYEDGE_FAULT_SCALE=N by N).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from cityedge.gateway.pipeline import CLOCK_FLOOR
from cityedge.protocol.key_files import create_key
from cityedge.protocol.keys import SigningKey
from cityedge.sdk.model import Quality
from cityedge.street.broker import Broker, free_port
from cityedge.street.modbus import ModbusStreet
from tests.support.agent_process import ROOT as AGENT_ROOT
from tests.support.agent_process import AgentProcess, agent_env, to_toml
from tests.support.command_post import CommandPost
from tests.support.outbox_probe import committed_readings as committed

ROOT = Path(__file__).resolve().parents[1]
# CITYEDGE_SOAK=1 (the README's knob for long runs) means ten times the kills and
# outages; CITYEDGE_FAULT_SCALE=N picks another multiple.
SOAK_SCALE = 10 if os.environ.get("CITYEDGE_SOAK") else 1
SCALE = max(1, int(os.environ.get("CITYEDGE_FAULT_SCALE") or SOAK_SCALE))
pytestmark = pytest.mark.timeout(300 * SCALE)
ARTIFACTS = ROOT / "test-artifacts"
RESULTS: dict[str, dict[str, Any]] = {}


@dataclass
class Row:
    scenario: str
    produced: int
    delivered: int
    duplicated: int
    lost: int
    recover_s: float
    note: str = ""


def record(row: Row) -> None:
    RESULTS[row.scenario] = asdict(row)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "reliability.json").write_text(json.dumps(RESULTS, indent=2))
    if os.environ.get("CITYEDGE_WRITE_RELIABILITY"):
        write_doc()


def write_doc() -> None:
    lines = [
        "| scenario | produced | delivered | duplicated (before dedupe) | lost | time to recover "
        "| notes |",
        "|---|---|---|---|---|---|---|",
    ]
    doc = ROOT / "docs" / "reliability.md"
    text = doc.read_text()
    start, end = "<!-- table:start -->", "<!-- table:end -->"
    head, _, rest = text.partition(start)
    table, _, tail = rest.partition(end)
    # A run of some scenarios (one file, one -k) replaces their rows and keeps the others'.
    rows = {line.split("|")[1].strip(): line for line in table.strip().splitlines()[2:]}
    for r in RESULTS.values():
        rows[r["scenario"]] = (
            f"| {r['scenario']} | {r['produced']} | {r['delivered']} | {r['duplicated']} | "
            f"{r['lost']} | {r['recover_s']:.1f} s | {r['note']} |"
        )
    lines += rows.values()
    doc.write_text(f"{head}{start}\n" + "\n".join(lines) + f"\n{end}{tail}")


@dataclass
class Site:
    tmp: Path
    broker: Broker
    street: ModbusStreet
    key: SigningKey
    post: CommandPost
    config: Path

    @property
    def db(self) -> Path:
        return self.tmp / "state" / "outbox.db"

    def polls(self) -> int:
        return sum(self.street.read_requests(d.name) for d in self.street.devices)

    def delivered(self) -> set[tuple[str, str, float]]:
        return {(r.reading.device, r.reading.point, r.reading.ts) for r in self.post.readings}


def write_config(tmp: Path, port: int, street: ModbusStreet, **extra: dict[str, Any]) -> Path:
    doc: dict[str, Any] = {
        "gateway": {"id": "gw-fault", "site": "lab", "state_dir": str(tmp / "state")},
        "uplink": {
            "host": "127.0.0.1",
            "port": port,
            "reconnect_min": 0.2,
            "reconnect_max": 1.0,
            "connect_timeout": 3.0,
            "batch_interval": 0.05,
        },
        "outbox": {"commit_interval": 0.1},
        "pipeline": {"full_report_interval": 0.001},
        "logging": {"level": "info", "format": "json"},
        "drivers": {"modbus": [street.driver_tables(name="street", poll_interval=0.2)]},
    }
    for name, values in extra.items():
        doc.setdefault(name, {}).update(values)
    path = tmp / "agent.toml"
    path.write_text(to_toml(doc))
    return path


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    key = create_key(tmp_path / "state" / "keys" / "gateway.key")
    with Broker(workdir=tmp_path / "broker") as broker:
        async with ModbusStreet(lampposts=3, meters=0) as street:
            config = write_config(tmp_path, broker.port, street)
            subscribing = time.time()
            async with CommandPost(broker.port, key.public_key) as post:
                # the command post's session must outlive a SIGKILLed broker, as a real
                # command post's does on a broker configured for it
                await broker.saved(since=subscribing)
                yield Site(tmp_path, broker, street, key, post, config)


async def test_kill9_during_ingest_and_drain(site: Site) -> None:
    kills = 50 * SCALE
    rng = random.Random(7)
    must_arrive: set[tuple[str, str, float]] = set()
    agent = AgentProcess(site.config)
    for i in range(kills):
        draining = i % 2 == 1  # odd rounds: broker up (drain); even: broker down (ingest)
        if draining:
            site.broker.start()
        else:
            site.broker.stop()
        agent.start()
        await asyncio.sleep(rng.uniform(0.8, 1.6))  # start-up is ~0.7 s of it
        agent.kill9()
        must_arrive |= committed(site.db)
    site.broker.start()
    started = time.monotonic()
    with agent:
        ok = await site.post.wait_for(lambda: must_arrive <= site.delivered(), timeout=90)
        recover = time.monotonic() - started
    lost = len(must_arrive - site.delivered())
    record(
        Row(
            f"kill -9 x{kills} during ingest and drain",
            len(must_arrive),
            len(site.delivered()),
            site.post.duplicates,
            lost,
            recover,
            "produced = committed rows seen in the store after each kill",
        )
    )
    assert ok and lost == 0
    assert (
        site.post.rejected == []
    )  # every resend carried the same bytes: a duplicate, not a forgery


async def test_broker_killed_mid_batch(site: Site) -> None:
    with AgentProcess(site.config) as agent:
        assert await site.post.wait_for(lambda: len(site.post.readings) > 50, 30)
        polls_before = site.polls()
        site.broker.kill()  # SIGKILL: no clean disconnect, in-flight PUBACKs lost
        await asyncio.sleep(3 * SCALE)
        # Everything accepted so far: in the store, or already verified upstream.
        must = committed(site.db) | site.delivered()
        taken_during = site.polls() - polls_before
        site.broker.start()
        back = time.monotonic()
        ok = await site.post.wait_for(lambda: must <= site.delivered(), timeout=60)
        recover = time.monotonic() - back
        assert agent.running()
    lost = len(must - site.delivered())
    record(
        Row(
            f"broker SIGKILLed mid-batch, back after {3 * SCALE} s",
            len(must),
            len(site.delivered()),
            site.post.duplicates,
            lost,
            recover,
            f"{taken_during} polls during the outage",
        )
    )
    assert ok and lost == 0


async def test_refused_login_backs_off_then_delivers(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run(  # noqa: ASYNC221 (a one-off local tool before the test starts)
        ["mosquitto_passwd", "-b", "-c", str(passwd), "gw-fault", "right"],
        check=True,
        capture_output=True,
    )
    passwd.chmod(0o644)
    key = create_key(tmp_path / "state" / "keys" / "gateway.key")
    (tmp_path / "wrong").write_text("wrong\n")
    (tmp_path / "right").write_text("right\n")
    # The gateway's listener wants a password; the command post has its own, open one.
    post_port = free_port()
    broker = Broker(default_listener=False, workdir=tmp_path / "broker")
    broker.extra_config = "\n".join(
        [
            "per_listener_settings true",
            f"listener {broker.port} 127.0.0.1",
            "allow_anonymous false",
            f"password_file {passwd}",
            f"listener {post_port} 127.0.0.1",
            "allow_anonymous true",
        ]
    )
    with broker:
        async with ModbusStreet(lampposts=2, meters=0) as street:
            bad = write_config(
                tmp_path,
                broker.port,
                street,
                uplink={"username": "gw-fault", "password_file": str(tmp_path / "wrong")},
            )
            with AgentProcess(bad) as agent:
                await asyncio.sleep(10)
                logs = agent.logs()
            attempts = broker.log_path.read_text().count("New connection from")
            assert "uplink.down" in logs and (
                "not authori" in logs.lower() or "bad user" in logs.lower()
            ), logs[-2000:]
            # Backoff, not a busy loop: with reconnect_min 0.2 s no more than one attempt
            # per 0.2 s may reach the broker (plus the harness's own readiness probe).
            # Full jitter over [0.2, 1.0] s averages ~17 in 10 s; a busy loop makes hundreds.
            assert 2 <= attempts <= 10 / 0.2 + 2, attempts
            good = write_config(
                tmp_path,
                broker.port,
                street,
                uplink={"username": "gw-fault", "password_file": str(tmp_path / "right")},
            )
            async with CommandPost(post_port, key.public_key) as post:
                must = committed(tmp_path / "state" / "outbox.db")
                started = time.monotonic()
                with AgentProcess(good):
                    ok = await post.wait_for(
                        lambda: (
                            must
                            <= {
                                (r.reading.device, r.reading.point, r.reading.ts)
                                for r in post.readings
                            }
                        ),
                        60,
                    )
                    recover = time.monotonic() - started
    record(
        Row(
            f"broker refuses login for 10 s ({attempts} attempts)",
            len(must),
            len(post.readings),
            post.duplicates,
            0 if ok else len(must),
            recover,
        )
    )
    assert ok


async def test_stalled_broker_bounds_memory(site: Site) -> None:
    with AgentProcess(site.config) as agent:
        assert await site.post.wait_for(lambda: len(site.post.readings) > 50, 30)
        assert agent.proc is not None
        pid = agent.proc.pid
        site.broker.pause()  # SIGSTOP: sockets open, nothing answers
        rss = []
        for _ in range(8 * SCALE):
            await asyncio.sleep(0.5)
            rss.append(_rss_mb(pid))
        site.broker.resume()
        back = time.monotonic()
        await asyncio.sleep(1)
        must = committed(site.db) | site.delivered()
        ok = await site.post.wait_for(lambda: must <= site.delivered(), 60)
        recover = time.monotonic() - back
    record(
        Row(
            f"broker stalled (SIGSTOP) {4 * SCALE} s",
            len(must),
            len(site.delivered()),
            site.post.duplicates,
            len(must - site.delivered()),
            recover,
            f"agent RSS {min(rss):.0f}-{max(rss):.0f} MB while stalled",
        )
    )
    assert ok
    assert max(rss) - min(rss) < 20  # bounded: rows wait on disk, not in memory


async def test_full_store_evicts_with_events_and_keeps_running(tmp_path: Path) -> None:
    key = create_key(tmp_path / "state" / "keys" / "gateway.key")
    with Broker(workdir=tmp_path / "broker") as broker:
        async with ModbusStreet(lampposts=3, meters=0) as street:
            config = write_config(tmp_path, broker.port, street, outbox={"max_bytes": 64 * 1024})
            async with CommandPost(broker.port, key.public_key) as post:
                broker.stop()  # offline: the store fills
                with AgentProcess(config) as agent:
                    await asyncio.sleep(8)
                    assert agent.running()
                    broker.start()  # the command post's persistent session comes back too
                    ok = await post.wait_for(
                        lambda: any(e.kind == "outbox.evicted" for e in post.events), 40
                    )
                    evicted = [e for e in post.events if e.kind == "outbox.evicted"]
    assert ok, agent.logs()[-2000:]
    dropped = sum(sum(e.data["counts"].values()) for e in evicted)
    record(
        Row(
            "store bound 64 KiB while offline 8 s",
            len(post.readings) + dropped,
            len(post.readings),
            post.duplicates,
            0,
            0.0,
            f"{dropped} oldest telemetry readings evicted, reported in outbox.evicted",
        )
    )
    assert dropped > 0
    assert all(e.data["reason"] in ("max-bytes", "disk-full") for e in evicted)


async def test_flooding_device_does_not_starve_others(tmp_path: Path) -> None:
    key = create_key(tmp_path / "state" / "keys" / "gateway.key")
    with Broker(workdir=tmp_path / "broker") as broker:
        async with ModbusStreet(lampposts=3, meters=0) as street:
            tables = street.driver_tables(name="street", poll_interval=1.0)
            tables["devices"][0]["poll_interval"] = 0.1  # 10x its neighbours
            config = tmp_path / "agent.toml"
            config.write_text(
                to_toml(
                    {
                        "gateway": {
                            "id": "gw-fault",
                            "site": "lab",
                            "state_dir": str(tmp_path / "state"),
                        },
                        "uplink": {"host": "127.0.0.1", "port": broker.port},
                        "pipeline": {"full_report_interval": 0.001},
                        "logging": {"format": "json"},
                        "drivers": {"modbus": [tables]},
                    }
                )
            )
            async with CommandPost(broker.port, key.public_key) as post:
                with AgentProcess(config) as agent:
                    await asyncio.sleep(6)
                    assert agent.proc is not None
                    rss = _rss_mb(agent.proc.pid)
    per_device = {
        d.name: len({r.reading.ts for r in post.readings if r.reading.device == d.name})
        for d in street.devices
    }
    flooder, *others = [d.name for d in street.devices]
    record(
        Row(
            "one device polled at 10x its rate",
            sum(per_device.values()) * 19,
            len(post.readings),
            post.duplicates,
            0,
            0.0,
            f"polls delivered: {per_device}; agent RSS {rss:.0f} MB",
        )
    )
    assert per_device[flooder] >= 3 * max(per_device[o] for o in others)
    assert all(per_device[o] >= 3 for o in others)


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


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
