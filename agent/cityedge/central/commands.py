"""Send a signed command to a gateway and wait for its signed result."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import structlog

from cityedge.central.link import BrokerError, BrokerUrl, as_broker_url, mqtt_client
from cityedge.central.verifier import Verifier, as_verifier
from cityedge.central.watch import payload_bytes
from cityedge.protocol.commands import command_digest, seal_command
from cityedge.protocol.entries import ResultEntry, command_result
from cityedge.protocol.keys import PublicKey, SigningKey
from cityedge.protocol.topics import ANY, DEFAULT_PREFIX, topic_for
from cityedge.protocol.trust_store import TRUST_UPDATE_OP, TrustedKey, parse_trust_update
from cityedge.sdk.model import Command, CommandResult

log = structlog.get_logger(__name__)


class NoResult(TimeoutError):
    """No verified result for the command arrived in time."""


class SiteNotFound(LookupError):
    """The gateway's site could not be learned from its retained state message."""


def new_command(
    key: SigningKey,
    target: str,
    op: str,
    *,
    device: str | None = None,
    args: Mapping[str, Any] | None = None,
    ttl: float = 60.0,
    now: float | None = None,
) -> Command:
    """A command with a fresh id, valid from now for `ttl` seconds."""
    if ttl <= 0:
        raise ValueError(f"ttl {ttl}: must be > 0 seconds")
    issued = time.time() if now is None else now
    return Command(
        id=uuid.uuid4().hex,
        target=target,
        device=device,
        op=op,
        args=dict(args or {}),
        issued=issued,
        expires=issued + ttl,
        key_id=key.key_id,
    )


def trust_update_command(
    key: SigningKey,
    target: str,
    version: int,
    keys: Sequence[TrustedKey],
    *,
    ttl: float = 600.0,
    now: float | None = None,
) -> Command:
    """A `trust.update` for one gateway: `keys` is the full new set (docs/protocol.md §11).
    The version must be above the gateway's stored one; use one version per change,
    city-wide, so every gateway ends up at the same version with the same set."""
    entries = [k.to_json() for k in keys]
    for entry in entries:
        entry["key"] = entry.pop("public_key")
    args: dict[str, Any] = {"version": version, "keys": entries}
    parse_trust_update(args)  # refuse here what the gateway would refuse as malformed
    return new_command(key, target, TRUST_UPDATE_OP, args=args, ttl=ttl, now=now)


async def send_command(
    broker_url: str | BrokerUrl,
    key: SigningKey,
    command: Command,
    *,
    trusted: Mapping[str, PublicKey] | Verifier,
    site: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    within: float = 30.0,
    ca_file: Path | None = None,
) -> CommandResult:
    """Publish `command` (QoS 1) to `<prefix>/<site>/<target>/cmd` and return the
    result the gateway signs on `…/cmd/result`, verified with `trusted` gateway keys.

    Without `site`, it is read from the gateway's retained state message.
    A result is ours when its digest is the digest of the payload we published
    (docs/protocol.md §8.3), never by the command id alone: a forged command that
    copies our id is answered under its own digest. Results that fail
    verification are logged and ignored. Raises NoResult when nothing verified
    arrives within `within` seconds (connecting included), SiteNotFound, or
    BrokerError.
    """
    url = as_broker_url(broker_url)
    verifier = as_verifier(trusted, prefix)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within

    def left() -> float:
        return max(0.01, deadline - loop.time())

    try:
        async with mqtt_client(
            url, timeout=min(within, 10.0), ca_file=ca_file, role="send"
        ) as client:
            messages = aiter(client.messages)
            if site is None:
                site = await _find_site(client, messages, verifier, prefix, command.target, left)
            result_topic = topic_for(prefix, site, command.target, "result")
            await client.subscribe(result_topic, qos=1, timeout=left())
            payload = seal_command(key, command)
            digest = command_digest(payload)
            await client.publish(
                topic_for(prefix, site, command.target, "command"), payload, qos=1,
                timeout=left(),
            )  # fmt: skip
            log.info("central.command.sent", id=command.id, target=command.target, op=command.op)
            while True:
                try:
                    message = await asyncio.wait_for(anext(messages), deadline - loop.time())
                except TimeoutError:
                    raise NoResult(
                        f"no result for command {command.id} from {command.target} "
                        f"within {within:g}s"
                    ) from None
                if str(message.topic) != result_topic:
                    continue
                verdict = verifier.verify(result_topic, payload_bytes(message.payload))
                if verdict.message is None:
                    log.warning("central.result.ignored", reason=verdict.reason,
                                detail=verdict.detail)  # fmt: skip
                    continue
                answer = match_result(verdict.message.results, digest)
                if answer is not None:
                    return answer
    except aiomqtt.MqttError as exc:
        raise BrokerError(f"{url}: {exc}") from None


def match_result(entries: Sequence[ResultEntry], digest: bytes) -> CommandResult | None:
    """The result among `entries` that answers the payload with `digest`, if any.
    `busy` is returned too: the command was not taken, and may be sent again."""
    for entry in entries:
        if entry["digest"] == digest:
            return command_result(entry)
    return None


async def _find_site(
    client: aiomqtt.Client,
    messages: AsyncIterator[aiomqtt.Message],
    verifier: Verifier,
    prefix: str,
    gateway: str,
    left: Callable[[], float],
) -> str:
    """The site of `gateway`, from its retained (verified) state message."""
    pattern = topic_for(prefix, ANY, gateway, "state")
    await client.subscribe(pattern, qos=1, timeout=left())
    try:
        async with asyncio.timeout(min(5.0, left())):
            while True:
                message = await anext(messages)
                verdict = verifier.verify(str(message.topic), payload_bytes(message.payload))
                if verdict.message is not None and verdict.message.gateway == gateway:
                    return verdict.message.site
    except TimeoutError:
        raise SiteNotFound(
            f"gateway {gateway!r}: no verified retained state under {pattern}; "
            "give its site (--site)"
        ) from None
    finally:
        await client.unsubscribe(pattern, timeout=left())
