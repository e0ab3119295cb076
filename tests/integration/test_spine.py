"""The spine, end to end with real parts: simulated lamppost controllers (pymodbus
servers) -> the agent (a real subprocess) -> a private Mosquitto -> a command-post
subscriber that verifies every message."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from cityedge.protocol.keys import SigningKey
from cityedge.street.broker import Broker
from cityedge.street.modbus import ModbusStreet
from tests.integration.conftest import ConfigWriter
from tests.support.agent_process import AgentProcess
from tests.support.command_post import CommandPost
from tests.support.outbox_probe import committed_readings


async def test_twenty_lampposts_arrive_verified_with_one_request_per_poll(
    broker: Broker, gateway_key: SigningKey, write_config: ConfigWriter
) -> None:
    async with ModbusStreet(lampposts=20, meters=0) as street:
        config = write_config(modbus=[street.driver_tables(name="street", poll_interval=0.5)])
        async with CommandPost(broker.port, gateway_key.public_key) as post:
            with AgentProcess(config) as agent:
                names = {d.name for d in street.devices}
                ok = await post.wait_for(lambda: post.devices_seen() >= names, timeout=40)
                assert ok, agent.logs()[-3000:]
                await asyncio.sleep(2.0)
                polls_before = {n: street.read_requests(n) for n in names}
            # The agent stopped cleanly (SIGTERM): retained "offline" state published.
            assert agent.proc is not None and agent.proc.returncode == 0, agent.logs()[-3000:]
            await post.wait_for(lambda: any(s.get("status") == "offline" for s in post.states), 5)
        assert post.rejected == []
        assert post.states[0]["status"] == "online"
        assert {d["name"] for d in post.states[0]["devices"]} == names  # type: ignore[attr-defined]
        # Requests counted at each simulated device vs polls seen at the command post:
        # one read request per device per poll (the planner's minimum for this profile).
        for name in names:
            poll_times = {r.reading.ts for r in post.readings if r.reading.device == name}
            assert len(poll_times) >= 3
            assert polls_before[name] <= len(poll_times) + 2, (name, polls_before[name])
            assert street.read_requests(name) >= len(poll_times)


async def test_tampered_message_is_rejected_saying_why(
    broker: Broker, gateway_key: SigningKey, write_config: ConfigWriter
) -> None:
    async with ModbusStreet(lampposts=1, meters=0) as street:
        config = write_config(modbus=[street.driver_tables(name="street", poll_interval=0.5)])
        async with CommandPost(broker.port, gateway_key.public_key) as post:
            with AgentProcess(config):
                assert await post.wait_for(lambda: len(post.readings) > 0, timeout=30)
        accepted = [v for v in post.verdicts if v.accepted and v.message and v.message.readings]
        original = accepted[0]
        payload = bytearray(_payload_of(post, original))
        payload[len(payload) // 2] ^= 0x01
        verdict = post.verifier.verify(original.topic, bytes(payload))
        assert not verdict.accepted
        assert verdict.reason in {"bad-signature", "malformed"}
        assert verdict.detail


def _payload_of(post: CommandPost, verdict: object) -> bytes:
    from cityedge.protocol.entries import Message

    message = verdict.message  # type: ignore[attr-defined]
    assert isinstance(message, Message)
    return post.raw[message.seq]


async def test_kill9_then_restart_loses_no_committed_reading(
    tmp_path: Path, broker: Broker, gateway_key: SigningKey, write_config: ConfigWriter
) -> None:
    async with ModbusStreet(lampposts=5, meters=0) as street:
        config = write_config(modbus=[street.driver_tables(name="street", poll_interval=0.2)])
        async with CommandPost(broker.port, gateway_key.public_key) as post:
            agent = AgentProcess(config).start()
            assert await post.wait_for(lambda: len(post.readings) > 50, timeout=30)
            broker.stop()  # let a backlog build up, so the kill leaves rows behind
            await asyncio.sleep(1.5)
            agent.kill9()
            before_kill_seq = max(post.seqs)
            left = {
                (d, p, round(ts, 6))
                for d, p, ts in committed_readings(tmp_path / "state" / "outbox.db")
            }
            assert left, "expected committed rows waiting in the outbox"
            broker.start()
            with AgentProcess(config):
                ok = await post.wait_for(
                    lambda: left <= {_key(r.reading) for r in post.readings}, timeout=40
                )
                assert ok, f"{len(left - {_key(r.reading) for r in post.readings})} rows lost"
        assert max(post.seqs) > before_kill_seq
        assert post.rejected == []


def _key(reading: object) -> tuple[str, str, float]:
    return (reading.device, reading.point, round(reading.ts, 6))  # type: ignore[attr-defined]


async def test_broker_outage_backlog_arrives_marked_historical(
    broker: Broker, gateway_key: SigningKey, write_config: ConfigWriter
) -> None:
    async with ModbusStreet(lampposts=3, meters=0) as street:
        names = [d.name for d in street.devices]
        # Requests are counted at the devices as polls: a generous timeout keeps a loaded
        # machine's late reply from becoming a retry (two requests for one reading).
        tables = street.driver_tables(name="street", poll_interval=0.5, timeout=5.0)
        config = write_config(modbus=[tables])
        async with CommandPost(broker.port, gateway_key.public_key) as post:
            with AgentProcess(config) as agent:
                assert await post.wait_for(lambda: len(post.readings) > 20, timeout=30)
                broker.stop()
                stopped = {n: street.read_requests(n) for n in names}
                last_before = max(r.reading.ts for r in post.readings)
                await asyncio.sleep(30)
                restarted = {n: street.read_requests(n) for n in names}
                back_at = time.time()
                broker.start()

                def outage_polls(name: str) -> set[float]:
                    return {
                        r.reading.ts
                        for r in post.readings
                        if r.reading.device == name and last_before < r.reading.ts < back_at
                    }

                ok = await post.wait_for(
                    lambda: all(
                        len(outage_polls(n)) >= restarted[n] - stopped[n] - 2 for n in names
                    ),
                    timeout=90,
                )
                detail = {n: (restarted[n] - stopped[n], len(outage_polls(n))) for n in names}
                assert ok, (detail, len(post.readings), post.duplicates, agent.logs()[-1500:])
        for name in names:
            polls = restarted[name] - stopped[name]
            assert polls >= 40, polls  # 30 s at 0.5 s
            assert len(outage_polls(name)) >= polls - 2
        during = [r for r in post.readings if last_before + 1 < r.reading.ts < back_at - 1]
        assert during and all(r.historical for r in during)
        assert post.rejected == []
