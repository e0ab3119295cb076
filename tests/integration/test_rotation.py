"""Key rotation end to end, on a real Mosquitto with the agent as a subprocess.

Command-post keys change only by signed trust updates (both keys verify during
the overlap, the old one is refused after; a lower version is refused, also
after a restart; an update signed by an untrusted key changes nothing). The
gateway's own key is rotated with `cityedge keys rotate` and announced by the
old key; the command post's verifier follows it and refuses forged ones. A flood
of bad commands yields a bounded number of results and events.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from cityedge.central.commands import new_command, send_command, trust_update_command
from cityedge.protocol.announcements import seal_key_announcement
from cityedge.protocol.commands import command_digest, seal_command
from cityedge.protocol.key_files import create_key
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.sealing import seal_object
from cityedge.protocol.trust_store import KeyState, TrustedKey
from cityedge.sdk.model import CommandResult, ResultCode
from cityedge.street.broker import Broker
from tests.integration.conftest import ConfigWriter
from tests.support.agent_process import AgentProcess, cityedge
from tests.support.command_post import CommandPost

GW = "gw-test"
SITE = "town-01"


@dataclass
class Site:
    broker: Broker
    agent: AgentProcess
    config: Path
    first: SigningKey  # the command-post key the config seeds the trust store with
    gateway: SigningKey
    post: CommandPost

    async def send(self, key: SigningKey, op: str = "ping", **kw: object) -> CommandResult:
        cmd = new_command(key, GW, op, **kw)  # type: ignore[arg-type]
        return await self.send_command(key, cmd)

    async def send_command(self, key: SigningKey, cmd: object) -> CommandResult:
        return await send_command(
            self.broker.url, key, cmd,  # type: ignore[arg-type]
            trusted=self.post.verifier, site=SITE, within=20,
        )  # fmt: skip

    async def update(self, signer: SigningKey, version: int, *keys: TrustedKey) -> CommandResult:
        return await self.send_command(signer, trust_update_command(signer, GW, version, keys))

    async def publish(self, topic: str, payload: bytes) -> None:
        async with aiomqtt.Client("127.0.0.1", self.broker.port, timeout=5) as client:
            await client.publish(f"cityedge/v2/{SITE}/{GW}/{topic}", payload, qos=1)

    async def restart(self) -> None:
        online = sum(s.get("status") == "online" for s in self.post.states)
        self.agent.stop()
        self.agent.start()
        assert await self.post.wait_for(
            lambda: sum(s.get("status") == "online" for s in self.post.states) > online, 30
        ), self.agent.logs()


def entry(key: SigningKey, **kw: object) -> TrustedKey:
    return TrustedKey(key.key_id, key.public_key, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def site(
    tmp_path: Path, broker: Broker, gateway_key: SigningKey, write_config: ConfigWriter
) -> AsyncIterator[Site]:
    first = create_key(tmp_path / "central-a.key")
    # refusal_answers below the default of 10, so the flood test shows the setting at work
    config = write_config(keys={"trust": [first.public_text()], "refusal_answers": 3})
    async with CommandPost(broker.port, gateway_key.public_key) as post:
        agent = AgentProcess(config).start()
        try:
            assert await post.wait_for(lambda: bool(post.states), timeout=30), agent.logs()
            yield Site(broker, agent, config, first, gateway_key, post)
        finally:
            agent.stop()


async def test_command_post_key_rotation_overlap_expiry_and_versions(
    site: Site, tmp_path: Path
) -> None:
    old, new = site.first, create_key(tmp_path / "central-b.key")
    assert (await site.send(new)).code == ResultCode.UNKNOWN_KEY  # not trusted yet

    # v1, signed by the old key: both keys active; the old one for a few seconds more.
    old_until = time.time() + 4
    done = await site.update(old, 1, entry(old, not_after=old_until), entry(new))
    assert done.code == ResultCode.DONE, done
    assert (await site.send(old)).code == ResultCode.DONE  # overlap: both verify
    assert (await site.send(new)).code == ResultCode.DONE

    # After its not_after, the old key is refused, by name.
    await asyncio.sleep(max(0.0, old_until - time.time()) + 0.5)
    late = await site.send(old)
    assert late.code == ResultCode.UNKNOWN_KEY and late.detail.startswith("expired-key:"), late
    assert (await site.send(new)).code == ResultCode.DONE

    # The same version again is refused, with the stored version in the answer.
    stale = await site.update(new, 1, entry(new))
    assert stale.code == ResultCode.DENIED and "stale-version" in stale.detail, stale
    assert stale.data["version"] == 1

    # A restart changes none of it: the version and the expiry are persisted.
    await site.restart()
    stale = await site.update(new, 1, entry(new))
    assert stale.code == ResultCode.DENIED and "stale-version" in stale.detail, stale
    assert (await site.send(old)).detail.startswith("expired-key:")
    assert (await site.send(new)).code == ResultCode.DONE

    # An update signed by a key nobody trusts changes nothing.
    stranger = create_key(tmp_path / "stranger.key")
    forged = await site.update(stranger, 9, entry(stranger))
    assert forged.code == ResultCode.UNKNOWN_KEY, forged
    assert (await site.send(stranger)).code == ResultCode.UNKNOWN_KEY
    assert (await site.send(new)).code == ResultCode.DONE

    # v2 revokes the old key and brings a third; v3 retires the second.
    third = create_key(tmp_path / "central-c.key")
    done = await site.update(new, 2, entry(old, state=KeyState.REVOKED), entry(new), entry(third))
    assert done.code == ResultCode.DONE, done
    assert (await site.send(old)).detail.startswith("revoked-key:")
    done = await site.update(third, 3, entry(new, state=KeyState.RETIRED), entry(third))
    assert done.code == ResultCode.DONE, done
    retired = await site.send(new)
    assert retired.code == ResultCode.UNKNOWN_KEY and retired.detail.startswith("retired-key:")
    assert (await site.send(third)).code == ResultCode.DONE

    # A lower version, signed by a valid key, is refused too, also after a restart.
    for _ in range(2):
        lower = await site.update(third, 2, entry(third))
        assert lower.code == ResultCode.DENIED and "stale-version" in lower.detail, lower
        assert lower.data["version"] == 3
        await site.restart()

    # Refused updates went upstream as security events named after their result code,
    # and so did the revoked key in use: a console watching security.unknown-key sees it.
    assert await site.post.wait_for(
        lambda: any(e.kind == "security.denied" and e.data["reason"] == "stale-version"
                    for e in site.post.events), 20,
    )  # fmt: skip
    assert any(e.kind == "security.unknown-key" and e.data["reason"] == "revoked-key"
               for e in site.post.events)  # fmt: skip
    assert site.agent.running()


async def test_gateway_key_rotation_is_announced_and_followed(site: Site) -> None:
    before = site.gateway.key_id
    site.agent.stop()
    rotated = cityedge("keys", "rotate", "-c", str(site.config))
    assert rotated.returncode == 0, rotated.stderr
    new_id = rotated.stdout.split("new key id:")[1].split()[0]
    assert new_id != before
    site.agent.start()
    assert await site.post.wait_for(
        lambda: any(s.get("key_id") == new_id for s in site.post.states), 30
    ), site.agent.logs()
    rotation = next(v for v in site.post.verdicts if v.rotated)
    assert rotation.rotated == ((before, new_id),)
    assert site.post.verifier.bindings[new_id] == GW
    # After rotation the gateway signs with the new key, and the command post verifies it.
    result = await site.send(site.first)
    assert result.code == ResultCode.DONE, result
    # the console's own subscription had it; the test's post may see it a moment later
    assert await site.post.wait_for(
        lambda: any(v.message and v.message.key_id == new_id and v.message.kind == "result"
                    for v in site.post.verdicts), 20,
    )  # fmt: skip


async def test_forged_key_announcement_is_refused(site: Site, tmp_path: Path) -> None:
    stranger, thief_key = create_key(tmp_path / "s.key"), create_key(tmp_path / "t.key")
    announcement = seal_key_announcement(stranger, thief_key.public_key, gateway=GW, ts=time.time())
    state = seal_object(
        thief_key, gateway=GW, site=SITE, kind="state", seq=0, ts=time.time(),
        data={"status": "online", "key_announcements": [announcement]},
    )  # fmt: skip
    rejected = len(site.post.rejected)
    await site.publish("state", state)
    assert await site.post.wait_for(lambda: len(site.post.rejected) > rejected, 20)
    verdict = site.post.rejected[-1]
    assert verdict.reason == "unknown-key" and "key announcement" in verdict.detail, verdict
    assert thief_key.key_id not in site.post.verifier.gateway_keys
    assert not any(v.rotated for v in site.post.verdicts)


async def test_bad_command_flood_yields_bounded_results_and_events(site: Site) -> None:
    flood = 200
    forged_digests: set[bytes] = set()
    async with aiomqtt.Client("127.0.0.1", site.broker.port, timeout=5) as client:
        for _ in range(flood):
            cmd = new_command(site.first, GW, "ping")
            payload = bytearray(seal_command(site.first, cmd))
            payload[-3] ^= 0xFF  # inside the signature
            forged_digests.add(command_digest(bytes(payload)))
            await client.publish(f"cityedge/v2/{SITE}/{GW}/cmd", bytes(payload), qos=1)
    # Commands are handled in order: once this one is answered, the flood was handled.
    marker = new_command(site.first, GW, "ping")
    marker_digest = command_digest(seal_command(site.first, marker))
    assert (await site.send_command(site.first, marker)).code == ResultCode.DONE
    # ...and once the test's post has the marker's result, it has everything sent before
    # it (one gateway connection, delivered in order)
    assert await site.post.wait_for(
        lambda: any(r["digest"] == marker_digest for r in site.post.results), 20
    )
    answered = [r for r in site.post.results if r["digest"] in forged_digests]
    assert all(r["command_id"] == "" for r in answered)  # a forgery never borrows an id
    flood_events = [e for e in site.post.events if e.kind == "security.bad-signature"]
    assert 1 <= len(answered) <= 3, len(answered)  # [keys] refusal_answers
    assert len(flood_events) == 1 and flood_events[0].data["count"] == 1
    # Nothing goes unreported: the summary of the rest is sent when its window ends
    # or, as here, when the agent stops (and it goes up after the restart).
    await site.restart()
    assert await site.post.wait_for(
        lambda: sum(e.data.get("count", 0) for e in site.post.events
                    if e.kind == "security.bad-signature") == flood, 30,
    ), [e.data for e in site.post.events if e.kind.startswith("security.")]  # fmt: skip
    summary = [e for e in site.post.events if e.kind == "security.bad-signature"][-1]
    assert summary.data["unanswered"] == flood - len(answered)
    assert len([e for e in site.post.events if e.kind == "security.bad-signature"]) == 2
    assert site.agent.running()


async def test_trust_update_with_bad_arguments_is_malformed_and_changes_nothing(
    site: Site,
) -> None:
    bad = new_command(site.first, GW, "trust.update", args={"version": 5, "keys": []})
    result = await site.send_command(site.first, bad)
    assert result.code == ResultCode.MALFORMED and "args.keys" in result.detail, result
    lockout = trust_update_command(site.first, GW, 5, [entry(site.first)])
    lockout = dataclasses.replace(
        lockout, args={"version": 5, "keys": [{"key": site.first.public_text(),
                                                "state": "retired"}]},
    )  # fmt: skip
    result = await site.send_command(site.first, lockout)
    assert result.code == ResultCode.DENIED and "no-usable-key" in result.detail, result
    assert (await site.send(site.first)).code == ResultCode.DONE
