"""The MQTT link to the command post: birth and will, signed batches, PUBACK-driven acks.

One connection at a time, owned here; when to try again is `reconnect.py`'s call
(a broker that refuses or drops us is retried calmly, never in a busy loop). The
outbox has sealed every message already; sending order after every (re)connect:

1. live messages (sealed after this connection came up) first, alarms first;
   the backlog waits for the first of them (`live_first_wait` at most), so the
   command post hears what is happening now before what it missed;
2. the backlog (everything sealed before, including messages sent earlier but
   never acknowledged, with the same bytes) behind them, oldest first, limited
   to a share of the in-flight window so that live traffic always has room.

Commands come in over MQTT v5 (or 3.1.1) and are acknowledged only once answered
(their result committed to the outbox); the client takes no more than it can hold
(`gateway.commands.intake`), and what does not fit is answered `busy`
(`on_busy`): a command never vanishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cityedge.gateway.commands.intake import COMMAND_WINDOW, MAX_PACKET_BYTES, CommandClient
from cityedge.gateway.config import GatewaySection, UplinkSection
from cityedge.gateway.outbox import Outbox, Sealed
from cityedge.gateway.reconnect import Reconnect
from cityedge.protocol.entries import ENTRY_KINDS
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.mqtt import MQTT_SOCKET_OPTIONS
from cityedge.protocol.sealing import seal_object
from cityedge.protocol.topics import topic_for
from cityedge.sdk.logs import Throttled

log = structlog.get_logger(__name__)

SESSION_EXPIRY: Final = 0xFFFFFFFF  # s; "never": the broker keeps our commands while we are away


class LinkState(StrEnum):
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"
    STOPPED = "stopped"


@dataclass(slots=True)
class UplinkStats:
    state: LinkState = LinkState.CONNECTING
    since: float = 0.0
    connects: int = 0
    failures: int = 0
    last_error: str | None = None
    messages_sent: int = 0
    entries_sent: int = 0
    historical_sent: int = 0
    commands_received: int = 0
    commands_shed: int = 0  # taken beyond the window (broker ignored it): answered `busy`
    flaps: int = 0  # sessions dropped within STABLE_SESSION_S of coming up


CommandHandler = Callable[[bytes], Awaitable[object]]
BusyHandler = Callable[[bytes], object]
StateProvider = Callable[[], dict[str, Any]]


class Uplink:
    def __init__(
        self,
        config: UplinkSection,
        gateway: GatewaySection,
        outbox: Outbox,
        key: SigningKey,
        *,
        birth: StateProvider,
        on_command: CommandHandler | None = None,
        on_busy: BusyHandler | None = None,
    ) -> None:
        self.config = config
        self.gateway = gateway
        self.outbox = outbox
        self.key = key
        self._birth = birth
        self._on_command = on_command
        self._on_busy = on_busy
        self.stats = UplinkStats(since=time.time())
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._receiving: CommandClient | None = None  # the session's client, for PUBACKs
        self._up_at: float | None = None  # loop time the current session came up
        self._live_after = 0
        # shed commands come in bursts (a backlog): first loudly, then a count a minute
        self._shed_log = Throttled(log, "uplink.command.shed", key_field="topic")

    # --- called from elsewhere in the agent -------------------------------------

    def wake(self) -> None:
        """New rows were committed: look for something to send."""
        self._wake.set()

    def topic(self, kind: str) -> str:
        return topic_for(self.config.topic_prefix, self.gateway.site, self.gateway.id, kind)

    async def publish_state(self) -> None:
        """Re-publish the birth message (the `rebirth` command)."""
        if self._client is not None:
            await self._publish_state(self._client, "online")

    async def stop(self, timeout: float = 1.0) -> None:
        """Publish the retained "offline" state while the link is still up, then end
        the connection loop (a clean disconnect does not fire the last will). A PUBACK
        normally takes milliseconds; a broker that does not answer within `timeout`
        gets the last will instead, so a stop never waits on it for long."""
        client = self._client
        if client is not None:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel.
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._publish_state(client, "offline")
        self._stop.set()

    # --- the connection loop ------------------------------------------------------

    async def run(self) -> None:
        cfg = self.config
        retries = Reconnect(cfg.host, cfg.port, cfg.reconnect_min, cfg.reconnect_max)
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            if self.stats.state is not LinkState.DOWN:
                self.stats.state = LinkState.CONNECTING
            answered = False  # the broker itself refused us (credentials, ACL, overload)
            self._up_at = None
            try:
                await self._session()
            except aiomqtt.MqttCodeError as exc:
                answered = True
                self._down(str(exc))
            except aiomqtt.MqttError as exc:
                # aiomqtt re-raises socket errors `from None` (the original stays the
                # context): a TLS refusal is the broker answering us, not an outage
                answered = isinstance(exc.__cause__ or exc.__context__, ssl.SSLError)
                self._down(str(exc))
            except ssl.SSLError as exc:
                answered = True
                self._down(f"{type(exc).__name__}: {exc}")
            except OSError as exc:
                self._down(f"{type(exc).__name__}: {exc}")
            if self._stop.is_set():
                break
            up_for = None if self._up_at is None else loop.time() - self._up_at
            retry = retries.after(up_for, answered=answered)
            if retry.flap:
                self.stats.flaps += 1
            log.info("uplink.retry", in_s=round(retry.delay, 2), flap=retry.flap)
            if await retries.wait(retry, self._stop):
                log.info("uplink.broker_back", broker=f"{cfg.host}:{cfg.port}")
        self.stats.state = LinkState.STOPPED

    def _down(self, reason: str) -> None:
        # Loud once per distinct reason, quiet while it persists; every failure counted.
        first = self.stats.last_error != reason
        if self.stats.state is LinkState.UP or self.stats.last_error is None:
            self.stats.since = time.time()
        self.stats.state = LinkState.DOWN
        self.stats.failures += 1
        self.stats.last_error = reason
        (log.warning if first else log.debug)(
            "uplink.down", broker=f"{self.config.host}:{self.config.port}", reason=reason
        )

    def _client_options(self) -> dict[str, Any]:
        cfg = self.config
        password = None
        if cfg.password_file is not None:
            password = cfg.password_file.read_text().strip()
        tls_context = None
        if cfg.tls:
            tls_context = ssl.create_default_context(
                cafile=str(cfg.ca_file) if cfg.ca_file else None
            )
            if cfg.cert_file and cfg.key_file:
                tls_context.load_cert_chain(str(cfg.cert_file), str(cfg.key_file))
        will_payload = self._state_payload("offline")
        return {
            "hostname": cfg.host,
            "port": cfg.port,
            "identifier": cfg.client_id or f"{self.gateway.site}-{self.gateway.id}",
            "username": cfg.username,
            "password": password,
            **self._session_options(),
            "keepalive": cfg.keepalive,
            "timeout": cfg.connect_timeout,
            "will": aiomqtt.Will(self.topic("state"), will_payload, qos=1, retain=True),
            "tls_context": tls_context,
            "max_inflight_messages": cfg.inflight,
            "socket_options": MQTT_SOCKET_OPTIONS,
        }

    def _session_options(self) -> dict[str, Any]:
        """A persistent session (commands queued while we were away are kept). 3.1.1 has
        no flow control or packet bound to ask for: `_shed` is then the only bound."""
        if self.config.mqtt_version == "3.1.1":  # paho refuses clean_start/properties
            return {"protocol": aiomqtt.ProtocolVersion.V311, "clean_session": False}
        connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect.SessionExpiryInterval = SESSION_EXPIRY
        connect.ReceiveMaximum = COMMAND_WINDOW
        connect.MaximumPacketSize = MAX_PACKET_BYTES
        return {
            "protocol": aiomqtt.ProtocolVersion.V5,  # for flow control and the packet bound
            "clean_start": False,  # resume the session: commands queued while we were away
            "properties": connect,
        }

    def _shed(self, message: aiomqtt.Message) -> None:
        """A command beyond the window (a broker that ignores Receive Maximum): answered
        `busy` so that the command post sends it again, and acknowledged."""
        self.stats.commands_shed += 1
        self._shed_log(str(message.topic), window=COMMAND_WINDOW, total=self.stats.commands_shed)
        if self._on_busy is not None and isinstance(message.payload, bytes | bytearray):
            try:
                self._on_busy(bytes(message.payload))
            except Exception as exc:  # called from paho's read callback: never raise into it
                log.error("uplink.command.busy_failed", error=repr(exc), exc_info=exc)
        self._ack(message)

    def _ack(self, message: aiomqtt.Message) -> None:
        """PUBACK a received command: the broker then forgets it and may send another."""
        if self._receiving is not None:
            self._receiving.ack(message)

    async def _session(self) -> None:
        client = CommandClient(
            shed=self._shed, headroom=self.config.inflight + 1, **self._client_options()
        )
        self._receiving = client
        async with client:
            # Up to `inflight` publishes wait for their PUBACK by design: not a warning.
            client.pending_calls_threshold = max(10, self.config.inflight * 2)
            self._client = client
            self._up_at = asyncio.get_running_loop().time()
            try:
                self.outbox.online = True
                self._live_after = self.outbox.last_seq()
                self.stats.state = LinkState.UP
                self.stats.since = time.time()
                self.stats.connects += 1
                self.stats.last_error = None
                log.info(
                    "uplink.up",
                    broker=f"{self.config.host}:{self.config.port}",
                    backlog_up_to_seq=self._live_after,
                )
                async with asyncio.TaskGroup() as tasks:
                    # Receiving first: queued commands fill the inbox at once, and a
                    # full inbox stops all reading, the birth's PUBACK included.
                    receiver = tasks.create_task(self._receive_loop(client))
                    await self._publish_state(client, "online")
                    await client.subscribe(
                        self.topic("command"), qos=1, timeout=self.config.connect_timeout
                    )
                    sender = tasks.create_task(self._send_loop(client))
                    stopper = tasks.create_task(self._stop.wait())
                    await asyncio.wait(
                        {sender, receiver, stopper}, return_when=asyncio.FIRST_COMPLETED
                    )
                    for task in (sender, receiver, stopper):
                        task.cancel()
            except* aiomqtt.MqttError as group:
                raise group.exceptions[0] from None
            finally:
                self._client = None
                self.outbox.online = False  # what is sealed from now on is historical
                self.outbox.release()  # unacknowledged messages go again next time

    def _state_payload(self, status: str) -> bytes:
        data = {"status": status, **(self._birth() if status == "online" else {})}
        return seal_object(
            self.key,
            gateway=self.gateway.id,
            site=self.gateway.site,
            kind="state",
            seq=self.outbox.last_seq(),  # informational: state messages take no sequence number
            ts=time.time(),
            data=data,
        )

    async def _publish_state(self, client: aiomqtt.Client, status: str) -> None:
        await client.publish(
            self.topic("state"),
            self._state_payload(status),
            qos=1,
            retain=True,
            timeout=self.config.connect_timeout,
        )

    # --- sending ------------------------------------------------------------------

    async def _send_loop(self, client: CommandClient) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        backlog_slots = max(1, math.ceil(cfg.inflight * cfg.backlog_share))
        failure: asyncio.Future[None] = loop.create_future()
        # task -> (carries backlog, launched at); in launch order, so the first is the oldest
        inflight: dict[asyncio.Task[None], tuple[bool, float]] = {}
        backlog_busy = 0
        topics = {kind: self.topic(kind) for kind in ENTRY_KINDS}
        # Live data first: no backlog before the first live message, or this deadline.
        backlog_from = loop.time() + cfg.live_first_wait
        live_sent = False

        def fail(exc: Exception) -> None:
            if not failure.done():
                failure.set_exception(exc)
            self._wake.set()

        async def publish(message: Sealed) -> None:
            try:
                # No timeout per publish (a timer each): `watchdog` times the window.
                await client.publish(topics[message.kind], message.payload, qos=1, timeout=math.inf)
            except aiomqtt.MqttError as exc:
                fail(exc)
                return
            self.outbox.ack((message,))
            self.stats.messages_sent += 1
            self.stats.entries_sent += message.entry_count
            if message.historical:
                self.stats.historical_sent += message.entry_count

        async def watchdog() -> None:
            """A broker that keeps the connection but stops answering (overloaded,
            SIGSTOPped) holds the window full: give up on the session when the oldest
            publish has waited `connect_timeout` for its PUBACK."""
            while True:
                await asyncio.sleep(min(1.0, cfg.connect_timeout / 4))
                self._shed_log.flush()  # a flood of shed commands that ended: its count
                if inflight and not client.paused:  # paused: we read no PUBACK, by choice
                    _, launched = next(iter(inflight.values()))
                    if loop.time() - max(launched, client.resumed_at) > cfg.connect_timeout:
                        fail(aiomqtt.MqttError(f"no PUBACK within {cfg.connect_timeout:g} s"))

        def launch(message: Sealed, backlog: bool) -> None:
            nonlocal backlog_busy
            task = asyncio.create_task(publish(message))
            inflight[task] = (backlog, loop.time())
            backlog_busy += backlog
            task.add_done_callback(finished)

        def finished(task: asyncio.Task[None]) -> None:
            nonlocal backlog_busy
            backlog, _ = inflight.pop(task, (False, 0.0))
            backlog_busy -= backlog
            self._wake.set()  # a slot is free

        def held() -> bool:
            """Whether the backlog still waits for the first live message."""
            return not live_sent and loop.time() < backlog_from

        def pick() -> tuple[Sealed, bool] | None:
            nonlocal live_sent
            message = self.outbox.next_message(live_after=self._live_after, backlog=False)
            if message is not None:
                live_sent = True
                return message, False
            if backlog_busy >= backlog_slots or held():
                return None
            message = self.outbox.next_message(live_after=self._live_after, backlog=True)
            return (message, True) if message is not None else None

        timer = asyncio.create_task(watchdog())
        try:
            while not failure.done():
                self._wake.clear()
                while len(inflight) < cfg.inflight and (picked := pick()) is not None:
                    launch(*picked)
                if inflight:
                    # the next PUBACK (a free slot), commit or failure wakes us
                    await self._wake.wait()
                    continue
                # idle: wait for a commit; the timeout is a safety net, not the pace
                # (or the end of the backlog's wait for live data)
                idle = cfg.batch_interval * 5
                if held():
                    idle = min(idle, max(0.0, backlog_from - loop.time()))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(idle):
                        await self._wake.wait()
            failure.result()
        finally:
            timer.cancel()
            for task in list(inflight):
                task.cancel()
            await asyncio.gather(timer, *inflight, return_exceptions=True)

    async def _receive_loop(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            if not isinstance(payload, bytes | bytearray):
                log.warning("uplink.command.not_bytes", topic=str(message.topic))
                self._ack(message)
                continue
            self.stats.commands_received += 1
            try:
                if self._on_command is not None:
                    await self._on_command(bytes(payload))
            except Exception as exc:  # a bad command must never drop the link
                log.error(
                    "uplink.command.failed", error=f"{type(exc).__name__}: {exc}", exc_info=exc
                )
            # Answered (committed to the outbox) or failed for good: the broker may let
            # the next one in. A session lost before this line gets it again, and the
            # replay cache answers the copy.
            self._ack(message)
