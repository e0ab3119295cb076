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
import random
import subprocess
import time
from pathlib import Path

import pytest

from cityedge.protocol.key_files import create_key
from cityedge.street.broker import Broker, free_port
from cityedge.street.modbus import ModbusStreet
from hil_tests.fault_site import SCALE, Row, Site, record, write_config
from tests.support.agent_process import AgentProcess, to_toml
from tests.support.command_post import CommandPost
from tests.support.outbox_probe import committed_readings as committed

pytestmark = pytest.mark.timeout(300 * SCALE)


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
    for name in ("wrong", "right"):  # the agent refuses a password file others can read
        (tmp_path / name).write_text(f"{name}\n")
        (tmp_path / name).chmod(0o600)
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
        # ten lampposts: v2 messages are small, three would take a minute to fill 64 KiB
        async with ModbusStreet(lampposts=10, meters=0) as street:
            config = write_config(tmp_path, broker.port, street, outbox={"max_bytes": 64 * 1024})
            async with CommandPost(broker.port, key.public_key) as post:
                broker.stop()  # offline: the store fills
                with AgentProcess(config) as agent:
                    await asyncio.sleep(8)
                    for _ in range(100):  # bounded: until the store has evicted, 50 s at most
                        if '"outbox.evicted"' in agent.logs():
                            break
                        await asyncio.sleep(0.5)
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


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
