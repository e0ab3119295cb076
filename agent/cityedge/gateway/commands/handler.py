"""The command handler: verify, check freshness and target, authorise, execute,
answer — in the order of docs/protocol.md, each check with its own result code."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import structlog

from cityedge.gateway.commands.replay import ReplayCache
from cityedge.gateway.commands.throttle import SecurityThrottle
from cityedge.gateway.commands.write import write_point
from cityedge.gateway.outbox import Entry, Outbox
from cityedge.gateway.policy import Policy
from cityedge.protocol.commands import open_command
from cityedge.protocol.decoding import EnvelopeError, Reason
from cityedge.protocol.entries import event_entry, result_entry
from cityedge.protocol.keys import PublicKey
from cityedge.protocol.trust_store import (
    TRUST_UPDATE_OP,
    TrustStore,
    TrustUpdateRefused,
    parse_trust_update,
)
from cityedge.sdk.model import (
    Command,
    CommandResult,
    DeviceInfo,
    Event,
    Priority,
    ResultCode,
    Severity,
    Value,
)

log = structlog.get_logger(__name__)

SECURITY_CODES = frozenset(
    {
        ResultCode.UNKNOWN_KEY,
        ResultCode.BAD_SIGNATURE,
        ResultCode.REPLAYED,
        ResultCode.WRONG_TARGET,
        ResultCode.DENIED,
    }
)
MAX_VALIDITY = (
    7 * 86400.0
)  # a command valid for longer than this is malformed: it bounds the replay cache
# Refusals an outsider can provoke at will: answered within a budget, not one for one.
REPEATABLE_CODES = frozenset(
    {ResultCode.WRONG_TARGET, ResultCode.NOT_YET_VALID, ResultCode.EXPIRED, ResultCode.REPLAYED}
)


@dataclass(slots=True)
class CommandStats:
    received: int = 0
    by_code: dict[str, int] = field(default_factory=dict)


Operation = Callable[[Command], Awaitable[CommandResult]]


class CommandHandler:
    def __init__(
        self,
        *,
        gateway: str,
        trusted: Mapping[str, PublicKey] | TrustStore,
        policy: Policy,
        outbox: Outbox,
        replay: ReplayCache,
        catalogue: Callable[[], Mapping[str, DeviceInfo]],
        write: Callable[[str, str, Value], Awaitable[None]],
        read: Callable[[str, str], Awaitable[Value | None]],
        skew: float = 30.0,
        device_timeout: float = 5.0,
        operations: Mapping[str, Operation] | None = None,
        on_answer: Callable[[], None] | None = None,
        throttle: SecurityThrottle | None = None,
    ) -> None:
        self.gateway = gateway
        self.trusted = trusted
        self.throttle = throttle or SecurityThrottle()
        # Commands answered `busy`: counted like refusals, reported as `commands.busy`.
        self.shedding = SecurityThrottle(self.throttle.window, prefix="commands")
        self.policy = policy
        self.outbox = outbox
        self.replay = replay
        self._catalogue = catalogue
        self._write = write
        self._read = read
        self.skew = skew
        self.device_timeout = device_timeout
        self.operations: dict[str, Operation] = dict(operations or {})
        self._on_answer = on_answer
        self.stats = CommandStats()
        self._lock = asyncio.Lock()  # one command at a time: writes to street equipment are serial
        self._trust_refusal: str | None = None  # set by a refused trust update
        if isinstance(trusted, TrustStore):
            self.operations[TRUST_UPDATE_OP] = self._trust_update

    def _keys(self, now: float) -> Mapping[str, PublicKey]:
        return self.trusted.usable(now) if isinstance(self.trusted, TrustStore) else self.trusted

    async def handle(self, payload: bytes) -> CommandResult:
        """Check, execute and answer one command payload."""
        async with self._lock:
            self.stats.received += 1
            self._trust_refusal = None
            try:
                command = open_command(payload, self._keys(time.time()))
            except EnvelopeError as err:
                err = self._explain(err)
                result = CommandResult(err.command_id, err.result_code, f"{err.code}: {err.detail}")
                self._refused(None, result, err.code, err.key_id)
                return result
            result = await self._check_and_run(command)
            if self._trust_refusal is not None:
                self._refused(command, result, "trust-update-refused", command.key_id)
            elif result.code in REPEATABLE_CODES or result.code in SECURITY_CODES:
                self._refused(command, result, str(result.code), command.key_id)
            else:
                self._answer(command, result)
            return result

    def busy(self, payload: bytes) -> CommandResult:
        """A command the uplink could not take (its window was full): answered `busy`,
        so that the command post sends it again, never dropped unheard. It is not
        recorded as seen (the copy sent again must not be a replay), and not run.
        Synchronous: the uplink calls it from the MQTT client's read callback."""
        self.stats.received += 1
        try:
            command = open_command(payload, self._keys(time.time()))
        except EnvelopeError as err:  # not a command the command post sent: as usual
            err = self._explain(err)
            result = CommandResult(err.command_id, err.result_code, f"{err.code}: {err.detail}")
            self._refused(None, result, err.code, err.key_id)
            return result
        result = CommandResult(
            command.id, ResultCode.BUSY, "gateway busy: command not taken, send it again"
        )
        # Always answered (verified); one `commands.busy` event per window counts them.
        self._refused(command, result, str(ResultCode.BUSY), command.key_id, self.shedding)
        return result

    def _explain(self, err: EnvelopeError) -> EnvelopeError:
        """An unknown key the trust store knows (revoked, retired, expired): say which."""
        if err.code != Reason.UNKNOWN_KEY or err.key_id is None:
            return err
        if not isinstance(self.trusted, TrustStore):
            return err
        why = self.trusted.refusal(err.key_id, time.time())
        if why is None:
            return err
        entry = self.trusted.keys[err.key_id]
        detail = {
            "revoked-key": f"key {err.key_id} was revoked (trust store v{self.trusted.version})",
            "retired-key": f"key {err.key_id} was retired (trust store v{self.trusted.version})",
            "expired-key": f"key {err.key_id} expired at {entry.not_after}",
            "key-not-yet-valid": f"key {err.key_id} is valid from {entry.not_before}",
        }[why]
        explained = EnvelopeError(why, detail, err.key_id, body=err.body)
        explained.command_id = err.command_id  # still answered under its id
        return explained

    def security_reports(self, now: float | None = None, *, everything: bool = False) -> int:
        """Send the security summaries that are due; returns how many."""
        now = time.time() if now is None else now
        events = [*self.throttle.due(now, everything=everything),
                  *self.shedding.due(now, everything=everything)]  # fmt: skip
        if events:
            self.outbox.add([Entry("event", int(e.priority), e.ts, event_entry(e)) for e in events])
            self.outbox.commit()
            if self._on_answer:
                self._on_answer()
        return len(events)

    async def report_security(self, every: float = 5.0) -> None:
        """Long-running: flush summaries whose window is over (a flood that stopped)."""
        while True:
            await asyncio.sleep(every)
            self.security_reports()

    async def _check_and_run(self, cmd: Command) -> CommandResult:
        now = time.time()
        if cmd.target != self.gateway:
            return CommandResult(
                cmd.id,
                ResultCode.WRONG_TARGET,
                f"command is for {cmd.target!r}, this is {self.gateway!r}",
            )
        if not (math.isfinite(cmd.issued) and math.isfinite(cmd.expires)) or (
            cmd.expires <= cmd.issued or cmd.expires - cmd.issued > MAX_VALIDITY
        ):
            return CommandResult(cmd.id, ResultCode.MALFORMED, "issue/expiry window is invalid")
        if cmd.issued > now + self.skew:
            return CommandResult(
                cmd.id, ResultCode.NOT_YET_VALID, f"issued {cmd.issued - now:.1f}s in the future"
            )
        if cmd.expires < now - self.skew:
            return CommandResult(
                cmd.id, ResultCode.EXPIRED, f"expired {now - cmd.expires:.1f}s ago"
            )
        if self.replay.seen_before(cmd.id, cmd.expires + self.skew):
            return CommandResult(cmd.id, ResultCode.REPLAYED, "command id already seen")
        self.replay.purge(now - self.skew)

        if cmd.op in self.operations and cmd.op != "write":
            if cmd.device is not None:
                device = self._catalogue().get(cmd.device)
                if device is None:
                    return CommandResult(cmd.id, ResultCode.UNKNOWN_DEVICE, str(cmd.device))
                denied = self.policy.check_operation(device.device_type, cmd.op)
                if denied:
                    return CommandResult(cmd.id, ResultCode.DENIED, denied)
            return await self.operations[cmd.op](cmd)
        if cmd.op != "write":
            return CommandResult(cmd.id, ResultCode.MALFORMED, f"unknown operation {cmd.op!r}")
        return await self._write_point(cmd)

    async def _trust_update(self, cmd: Command) -> CommandResult:
        """Replace the trusted command-post keys; refusals are security events too."""
        assert isinstance(self.trusted, TrustStore)
        try:
            update = parse_trust_update(cmd.args)
        except ValueError as exc:
            self._trust_refusal = "malformed"
            return CommandResult(cmd.id, ResultCode.MALFORMED, f"trust update: {exc}")
        try:
            self.trusted.apply(update, time.time())
        except TrustUpdateRefused as refused:
            self._trust_refusal = refused.reason
            return CommandResult(cmd.id, ResultCode.DENIED, str(refused),
                                 data={"version": self.trusted.version})  # fmt: skip
        except OSError as exc:
            return CommandResult(cmd.id, ResultCode.REJECTED,
                                 f"trust store {self.trusted.path}: {exc.strerror}")  # fmt: skip
        log.warning("trust.updated", version=update.version, by=cmd.key_id,
                    keys={k.key_id: k.state.value for k in update.keys})  # fmt: skip
        return CommandResult(
            cmd.id, ResultCode.DONE, f"trust store now at version {update.version}",
            data={"version": update.version, "keys": sorted(self.trusted.keys)},
        )  # fmt: skip

    async def _write_point(self, cmd: Command) -> CommandResult:
        return await write_point(
            cmd, catalogue=self._catalogue, policy=self.policy, write=self._write,
            read=self._read, timeout=self.device_timeout,
        )  # fmt: skip

    def _refused(
        self,
        cmd: Command | None,
        result: CommandResult,
        kind: str,
        key_id: str | None,
        throttle: SecurityThrottle | None = None,
    ) -> None:
        """A refusal: a security event (throttled) and, within the budget, a result.
        Verified fresh commands (denied, refused trust updates) are always answered."""
        now = time.time()
        self.stats.by_code[result.code] = self.stats.by_code.get(result.code, 0) + 1
        always = cmd is not None and result.code not in REPEATABLE_CODES
        answer, event = (throttle or self.throttle).note(
            kind, now, result.detail, key_id, answer=always
        )
        entries: list[Entry] = []
        if answer:
            entries.append(Entry("result", Priority.ALARM, now, result_entry(result, now)))
        if event is not None:
            entries.append(Entry("event", int(event.priority), now, event_entry(event)))
            log.warning("command.refused", kind=kind, command=result.command_id,
                        detail=result.detail, count=event.data["count"])  # fmt: skip
        else:
            log.debug("command.refused", kind=kind, command=result.command_id, answered=answer)
        if entries:
            self.outbox.add(entries)
            self.outbox.commit()
            if self._on_answer:
                self._on_answer()

    def _answer(self, cmd: Command | None, result: CommandResult) -> None:
        now = time.time()
        self.stats.by_code[result.code] = self.stats.by_code.get(result.code, 0) + 1
        security = result.code in SECURITY_CODES
        audit = Event(
            "command.audit",
            "commands",
            now,
            Severity.WARNING if security else Severity.INFO,
            None,
            {
                "command": result.command_id,
                "code": str(result.code),
                "detail": result.detail,
                "op": cmd.op if cmd else None,
                "device": cmd.device if cmd else None,
                "key_id": cmd.key_id if cmd else None,
            },
        )
        self.outbox.add(
            [
                Entry("result", Priority.ALARM, now, result_entry(result, now)),
                Entry("event", int(audit.priority), now, event_entry(audit)),
            ]
        )
        # An answer is accepted like a reading: committed before we say so.
        self.outbox.commit()
        if self._on_answer:
            self._on_answer()
        (log.warning if security else log.info)(
            "command.answered",
            command=result.command_id,
            code=str(result.code),
            detail=result.detail,
        )
