"""What the console tests need from a street: a gateway publishing sealed messages
and answering commands, using nothing but the protocol's own API."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiomqtt

from cityedge.protocol.commands import command_digest, open_command
from cityedge.protocol.decoding import EnvelopeError
from cityedge.protocol.entries import result_entry
from cityedge.protocol.keys import PublicKey, SigningKey
from cityedge.protocol.sealing import seal, seal_object
from cityedge.sdk.model import CommandResult, ResultCode

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "cityedge/v2"
SITE = "old-town"
GATEWAY = "gw-17"


def topic(suffix: str, gateway: str = GATEWAY, site: str = SITE) -> str:
    return f"{PREFIX}/{site}/{gateway}/{suffix}"


def cli(*args: str) -> list[str]:
    """The real `cityedge` command line, as a subprocess argv."""
    return [sys.executable, "-m", "cityedge.cli", *args]


async def publish(port: int, *messages: tuple[str, bytes, bool]) -> None:
    """Publish (topic, payload, retain) QoS 1, in order, each acknowledged by the broker."""
    async with aiomqtt.Client("127.0.0.1", port, timeout=10) as client:
        for where, payload, retain in messages:
            await client.publish(where, payload, qos=1, retain=retain, timeout=10)


@dataclass
class Gateway:
    """Answers commands like a gateway would: verify, act, seal a result, publish it."""

    key: SigningKey
    command_keys: dict[str, PublicKey]
    port: int
    seq: int = 100
    received: list[str] = field(default_factory=list)

    def answer(self, payload: bytes) -> CommandResult:
        return replace(self._answer(payload), command_digest=command_digest(payload))

    def _answer(self, payload: bytes) -> CommandResult:
        try:
            cmd = open_command(payload, self.command_keys)
        except EnvelopeError as err:
            return CommandResult("", err.result_code, str(err))
        self.received.append(cmd.op)
        if cmd.target != GATEWAY:
            return CommandResult(cmd.id, ResultCode.WRONG_TARGET)
        if cmd.op == "ping":
            return CommandResult(cmd.id, ResultCode.DONE, "pong")
        if cmd.device != "lamppost-03":
            return CommandResult(cmd.id, ResultCode.UNKNOWN_DEVICE, f"no device {cmd.device!r}")
        value = cmd.args.get("value")
        return CommandResult(cmd.id, ResultCode.DONE, "", value, True)

    def sealed_result(self, result: CommandResult, key: SigningKey | None = None) -> bytes:
        self.seq += 1
        return seal(
            key or self.key,
            gateway=GATEWAY,
            site=SITE,
            kind="result",
            seq=self.seq,
            ts=1700000000.0,
            historical=False,
            entries=[result_entry(result, 1700000000.0)],
        )

    async def run(self, ready: asyncio.Event, forger: SigningKey) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, timeout=10) as client:
            state = seal_object(
                self.key,
                gateway=GATEWAY,
                site=SITE,
                kind="state",
                seq=self.seq,
                ts=1700000000.0,
                data={"status": "online"},
            )
            await client.publish(topic("state"), state, qos=1, retain=True, timeout=10)
            await client.subscribe(topic("cmd"), qos=1, timeout=10)
            ready.set()
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                payload = message.payload
                result = self.answer(payload)
                # a forged "done" first: the command post must not take it
                forged = replace(result, code=ResultCode.DONE, detail="forged")
                await client.publish(
                    topic("cmd/result"), self.sealed_result(forged, forger), qos=1, timeout=10
                )
                # then a genuine result under the same id for other bytes (what a gateway
                # answers a forged copy of the command): not this command's answer either
                other = replace(forged, command_digest=command_digest(payload + b"x"))
                await client.publish(
                    topic("cmd/result"), self.sealed_result(other), qos=1, timeout=10
                )
                await client.publish(
                    topic("cmd/result"), self.sealed_result(result), qos=1, timeout=10
                )


@contextlib.asynccontextmanager
async def answering_gateway(gateway: Gateway) -> AsyncIterator[Gateway]:
    ready = asyncio.Event()
    task = asyncio.create_task(gateway.run(ready, SigningKey.from_seed(bytes([66]) * 32)))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        yield gateway
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
