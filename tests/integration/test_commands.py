"""Signed commands end to end: the command-post library signs and publishes over a
real Mosquitto, the agent (a subprocess) checks and executes against pymodbus
lampposts, and a signed result comes back for every command — one test per
result code. A refused command never reaches the device (counted at the device)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from cityedge.central.commands import new_command, send_command
from cityedge.protocol.commands import command_digest, seal_command
from cityedge.protocol.key_files import create_key
from cityedge.protocol.keys import SigningKey
from cityedge.sdk.model import Command, CommandResult, ResultCode
from cityedge.street.broker import Broker
from cityedge.street.modbus import Fault, ModbusStreet
from tests.integration.conftest import ConfigWriter
from tests.protocol import command_vectors
from tests.support.agent_process import AgentProcess
from tests.support.command_post import CommandPost

POLICY = {"lamppost": {"writes": {"dimming": {"min": 0, "max": 100}, "lamp_on": {}}}}


@dataclass
class Site:
    broker: Broker
    street: ModbusStreet
    agent: AgentProcess
    central: SigningKey
    gateway: SigningKey
    post: CommandPost

    @property
    def url(self) -> str:
        return self.broker.url

    async def send(self, cmd: Command, *, key: SigningKey | None = None) -> CommandResult:
        return await send_command(
            self.url, key or self.central, cmd,
            trusted={self.gateway.key_id: self.gateway.public_key}, site="town-01", within=20,
        )  # fmt: skip

    async def publish_raw(self, payload: bytes) -> None:
        async with aiomqtt.Client("127.0.0.1", self.broker.port, timeout=5) as client:
            await client.publish("cityedge/v2/town-01/gw-test/cmd", payload, qos=1)

    def writes(self) -> int:
        return sum(self.street.write_requests(d.name) for d in self.street.devices)


@pytest.fixture
async def site(
    tmp_path: Path, broker: Broker, gateway_key: SigningKey, write_config: ConfigWriter
) -> AsyncIterator[Site]:
    central = create_key(tmp_path / "central.key")
    async with ModbusStreet(lampposts=2, meters=0) as street:
        config = write_config(
            modbus=[street.driver_tables(name="street", poll_interval=1.0, timeout=0.5, retries=0)],
            keys={"trust": [central.public_text()]},
            policy=POLICY,
            pipeline={"full_report_interval": 60.0},
        )
        async with CommandPost(broker.port, gateway_key.public_key) as post:
            agent = AgentProcess(config).start()
            try:
                assert await post.wait_for(lambda: bool(post.states), timeout=30), agent.logs()
                yield Site(broker, street, agent, central, gateway_key, post)
            finally:
                agent.stop()


def write(site: Site, point: str = "dimming", value: object = 40, **kw: object) -> Command:
    return new_command(site.central, "gw-test", "write", device="lamppost-001",
                       args={"point": point, "value": value}, **kw)  # type: ignore[arg-type]  # fmt: skip


async def test_done_writes_and_reads_back(site: Site) -> None:
    result = await site.send(write(site, value=40))
    assert result.code == ResultCode.DONE, result
    assert result.readback == 40 and result.readback_matched is True
    assert site.street.register("lamppost-001", "dimming") == 40
    assert site.street.write_requests("lamppost-001") == 1


def _vector(name: str) -> dict[str, object]:
    """The documented answer to operation `name` (docs/test-vectors/commands/)."""
    doc = json.loads((command_vectors.VECTOR_DIR / "operations.json").read_text())
    (case,) = [c for c in doc["cases"] if c["name"] == name]
    return dict(case)


def _answers_like_the_vector(result: CommandResult, name: str) -> None:
    """Same code, same detail shape and the same data keys as the documented answer."""
    entry = _vector(name)["result"]
    assert isinstance(entry, list)
    code, detail = entry[2], entry[4]
    data = entry[7] if len(entry) > 7 else {}
    assert result.code == code, result

    def shape(text: str) -> str:
        return re.sub(r"\b(ok|warn|fail)\b", "S", re.sub(r"\d+", "N", text))

    assert shape(result.detail) == shape(detail), result
    assert set(result.data) == set(data), result


async def test_ping(site: Site) -> None:
    result = await site.send(new_command(site.central, "gw-test", "ping"))
    assert result.code == ResultCode.DONE and result.detail == "pong"
    _answers_like_the_vector(result, "ping")


async def test_rebirth_republishes_the_state(site: Site) -> None:
    before = len(site.post.states)
    result = await site.send(new_command(site.central, "gw-test", "rebirth"))
    assert result.code == ResultCode.DONE, result
    _answers_like_the_vector(result, "rebirth")
    assert await site.post.wait_for(lambda: len(site.post.states) > before, 20)
    assert site.post.states[-1]["key_id"] == site.post.gateway_key.key_id


async def test_diagnostics_returns_the_check_results(site: Site) -> None:
    result = await site.send(new_command(site.central, "gw-test", "diagnostics"))
    assert result.code == ResultCode.DONE, result
    _answers_like_the_vector(result, "diagnostics")
    check_keys = set(_vector("diagnostics")["result"][7]["checks"][0])  # type: ignore[index]
    assert all(set(c) == check_keys for c in result.data["checks"])
    names = {c["name"].split(".")[0] for c in result.data["checks"]}
    assert {"config", "keys", "clock", "disk", "outbox"} <= names
    assert result.data["status"] in ("ok", "warn", "fail")
    assert {d["device"] for d in result.data["devices"]} >= {"lamppost-001"}


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda s: write(s, value=150), ResultCode.DENIED),
        (lambda s: write(s, point="comms_timeout", value=20), ResultCode.DENIED),
        (lambda s: write(s, point="power", value=1), ResultCode.DENIED),
        (lambda s: write(s, point="nonsense"), ResultCode.UNKNOWN_POINT),
        (lambda s: dataclasses.replace(write(s), device="lamppost-999"), ResultCode.UNKNOWN_DEVICE),
        (lambda s: dataclasses.replace(write(s), target="gw-other"), ResultCode.WRONG_TARGET),
        (lambda s: write(s, now=time.time() + 3600), ResultCode.NOT_YET_VALID),
        (lambda s: write(s, now=time.time() - 7200), ResultCode.EXPIRED),
        (lambda s: new_command(s.central, "gw-test", "format-disk"), ResultCode.MALFORMED),
        (lambda s: dataclasses.replace(write(s), device=None), ResultCode.MALFORMED),
        (lambda s: write(s, value="40"), ResultCode.DENIED),
    ],
    ids=["out-of-range", "point-not-in-policy", "read-only", "unknown-point",
         "unknown-device", "wrong-target", "not-yet-valid", "expired", "unknown-op",
         "write-without-device", "text-for-a-number"],
)  # fmt: skip
async def test_refused_commands_never_reach_the_device(site: Site, make: object, code: str) -> None:
    cmd = make(site)  # type: ignore[operator]
    if code == ResultCode.WRONG_TARGET:
        # published on *our* topic but addressed to another gateway
        await site.publish_raw(seal_command(site.central, cmd))
        assert await site.post.wait_for(
            lambda: any(r["command_id"] == cmd.id for r in site.post.results), 20
        )
        result = next(r for r in site.post.results if r["command_id"] == cmd.id)
        assert result["code"] == code
    else:
        result_obj = await site.send(cmd)
        assert result_obj.code == code, result_obj
        assert result_obj.detail
    assert site.writes() == 0


async def _raw_result(site: Site, payload: bytes) -> dict[str, object]:
    """The result that answers `payload`: matched by its digest, as a command post does."""
    digest = command_digest(payload)
    await site.publish_raw(payload)
    assert await site.post.wait_for(
        lambda: any(r["digest"] == digest for r in site.post.results), 20
    )
    return next(r for r in site.post.results if r["digest"] == digest)


async def test_unknown_key_bad_signature_and_garbage(site: Site, tmp_path: Path) -> None:
    stranger = create_key(tmp_path / "stranger.key")
    cmd = write(site)
    result = await site.send(dataclasses.replace(cmd, key_id=stranger.key_id), key=stranger)
    assert result.code == ResultCode.UNKNOWN_KEY
    real = write(site)
    payload = seal_command(site.central, real)
    forged = bytearray(payload)
    forged[-5] ^= 0xFF  # inside the signature
    # The forged copy is answered under its own digest and no id: nothing a command
    # post matches to the real command, which is then answered as if nothing happened.
    bad = await _raw_result(site, bytes(forged))
    assert bad["code"] == ResultCode.BAD_SIGNATURE and bad["command_id"] == ""
    assert not any(r["command_id"] == real.id for r in site.post.results)
    assert (await _raw_result(site, payload))["code"] == ResultCode.DONE
    garbage = await _raw_result(site, b"\x00garbage")
    assert garbage["code"] == ResultCode.MALFORMED and garbage["command_id"] == ""
    assert site.writes() == 1  # the real one
    assert site.agent.running()


async def test_replay_is_refused_also_after_restart(site: Site) -> None:
    """One payload, one result: copies of it are counted (security.replayed) and not
    answered; a new payload reusing the id is answered `replayed` under its own digest."""
    cmd = write(site, value=30)
    payload = seal_command(site.central, cmd)
    first = await _raw_result(site, payload)
    assert first["code"] == ResultCode.DONE
    writes = site.writes()
    reused = seal_command(site.central, dataclasses.replace(cmd, expires=cmd.expires + 1))
    await site.publish_raw(payload)  # a copy: never a second result for these bytes
    second = await _raw_result(site, reused)
    assert second["code"] == ResultCode.REPLAYED and second["command_id"] == cmd.id
    site.agent.stop()
    site.agent.start()
    assert await site.post.wait_for(
        lambda: sum(s.get("status") == "online" for s in site.post.states) >= 2, 30
    )
    await site.publish_raw(payload)
    third = await _raw_result(site, seal_command(site.central, dataclasses.replace(cmd, args={})))
    assert third["code"] == ResultCode.MALFORMED  # a marker: everything before it was handled
    assert await site.post.wait_for(
        lambda: any(e.kind == "security.replayed" and e.data["unanswered"] >= 1
                    for e in site.post.events), 20,
    )  # fmt: skip
    assert [r["code"] for r in site.post.results if r["digest"] == command_digest(payload)] == [
        ResultCode.DONE
    ]
    assert site.writes() == writes


async def test_unreachable_timed_out_and_rejected_devices(site: Site) -> None:
    site.street.set_fault("lamppost-002", Fault.EXCEPTION)
    result = await site.send(dataclasses.replace(write(site), device="lamppost-002"))
    assert result.code == ResultCode.REJECTED, result
    site.street.set_fault("lamppost-002", Fault.SILENT)
    result = await site.send(dataclasses.replace(write(site), device="lamppost-002"))
    assert result.code in (ResultCode.UNREACHABLE, ResultCode.TIMED_OUT), result
    await site.street.switch_off("lamppost-002")
    await asyncio.sleep(0.5)
    result = await site.send(dataclasses.replace(write(site), device="lamppost-002"))
    assert result.code == ResultCode.UNREACHABLE, result
    # the healthy lamppost is untouched by all this
    assert (await site.send(write(site, value=55))).code == ResultCode.DONE
