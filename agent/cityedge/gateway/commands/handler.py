"""The command handler: the checks of docs/protocol.md §4.1 in that order, each
with its own result code, then the operation — and every answer bound to the
exact payload it answers by the payload's digest (§8.3)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace

import structlog

from cityedge.gateway.commands.operations import (
    OPERATIONS,
    DeviceRule,
    Operation,
    malformed_detail,
)
from cityedge.gateway.commands.replay import ReplayCache
from cityedge.gateway.commands.throttle import SecurityThrottle
from cityedge.gateway.commands.write import write_point
from cityedge.gateway.outbox import Entry, Outbox
from cityedge.gateway.policy import Policy
from cityedge.protocol.commands import command_digest, open_command
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

# A command valid for longer than this is malformed: it bounds the replay cache.
MAX_VALIDITY = 7 * 86400.0
DEFAULT_CLOCK_ALLOWANCE = 30.0  # [keys] clock_allowance
# Refused before the id is recorded (checks 1-11 of §4.1): what anyone can repeat at
# will, so answered within a budget; every one counted in a `security.<code>` event.
REPEATABLE_CODES = frozenset(
    {
        ResultCode.TOO_LARGE, ResultCode.MALFORMED, ResultCode.UNSUPPORTED_VERSION,
        ResultCode.UNKNOWN_KEY, ResultCode.BAD_SIGNATURE, ResultCode.WRONG_TARGET,
        ResultCode.NOT_YET_VALID, ResultCode.EXPIRED, ResultCode.REPLAYED,
    }
)  # fmt: skip
# Codes reported as `security.<code>` events: the repeatable ones, and `denied`.
SECURITY_CODES = REPEATABLE_CODES | {ResultCode.DENIED}


@dataclass(slots=True)
class CommandStats:
    received: int = 0
    by_code: dict[str, int] = field(default_factory=dict)


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
        clock_allowance: float = DEFAULT_CLOCK_ALLOWANCE,
        device_timeout: float = 5.0,
        operations: Mapping[str, Operation] | None = None,
        on_answer: Callable[[], None] | None = None,
        throttle: SecurityThrottle | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.gateway = gateway
        self.trusted = trusted
        self.clock = clock  # wall clock: validity windows, key windows, result times
        self.throttle = throttle or SecurityThrottle()
        # Commands answered `busy`: counted like refusals, reported as `commands.busy`.
        self.shedding = SecurityThrottle(self.throttle.window, prefix="commands")
        self.policy = policy
        self.outbox = outbox
        self.replay = replay
        self._catalogue = catalogue
        self._write = write
        self._read = read
        self.clock_allowance = clock_allowance
        self.device_timeout = device_timeout
        self.operations: dict[str, Operation] = {"write": self._write_point}
        self.operations.update(operations or {})
        self._on_answer = on_answer
        self.stats = CommandStats()
        self._lock = asyncio.Lock()  # one command at a time: writes to street equipment are serial
        self._trust_refusal: str | None = None  # set by a refused trust update
        if isinstance(trusted, TrustStore):
            self.operations[TRUST_UPDATE_OP] = self._trust_update
        unknown = sorted(set(self.operations) - set(OPERATIONS))
        if unknown:
            raise ValueError(f"operations {unknown} are not in the registry (commands.operations)")

    def register(self, name: str, run: Operation) -> None:
        """Add the implementation of a registered operation (e.g. `lighting.program`)."""
        if name not in OPERATIONS:
            raise ValueError(f"operation {name!r} is not in the registry (commands.operations)")
        self.operations[name] = run

    def _keys(self, now: float) -> Mapping[str, PublicKey]:
        return self.trusted.usable(now) if isinstance(self.trusted, TrustStore) else self.trusted

    async def handle(self, payload: bytes) -> CommandResult:
        """Check, execute and answer one command payload."""
        async with self._lock:
            self.stats.received += 1
            self._trust_refusal = None
            digest = command_digest(payload)
            now = self.clock()
            try:
                cmd = open_command(payload, self._keys(now))  # checks 1-7
            except EnvelopeError as err:
                return self._envelope_refused(err, digest)
            refused = self._check(cmd, digest, now)  # checks 7-11
            if refused is not None:
                return refused
            result = replace(await self._run(cmd), command_id=cmd.id, command_digest=digest)
            self._answer(cmd, result)
            return result

    def busy(self, payload: bytes) -> CommandResult:
        """A command the uplink could not take (its window was full): answered `busy`,
        so that the command post sends it again, never dropped unheard. It is not
        recorded as seen (the copy sent again must not be a replay), and not run.
        Synchronous: the uplink calls it from the MQTT client's read callback."""
        self.stats.received += 1
        digest = command_digest(payload)
        try:
            cmd = open_command(payload, self._keys(self.clock()))
        except EnvelopeError as err:  # not a command the command post sent: as usual
            return self._envelope_refused(err, digest)
        detail = "busy: command not taken, send it again"
        result = CommandResult(cmd.id, ResultCode.BUSY, detail, command_digest=digest)
        # Always answered (verified); one `commands.busy` event per window counts them.
        self._refuse(result, cmd.key_id, answer=True, throttle=self.shedding)
        return result

    def _envelope_refused(self, err: EnvelopeError, digest: bytes) -> CommandResult:
        """Checks 1-7 failed: answered under the payload's digest; the command id only
        when the signature verified (a signed body that is malformed)."""
        reason = err.code
        known = err.key_id is not None and isinstance(self.trusted, TrustStore)
        if err.code == Reason.UNKNOWN_KEY and known:
            assert isinstance(self.trusted, TrustStore) and err.key_id is not None
            reason = self.trusted.refusal(err.key_id, self.clock()) or reason
        detail = f"{reason}: {self._why(reason, err)}"
        result = CommandResult(err.command_id, err.result_code, detail, command_digest=digest)
        self._refuse(result, err.key_id, reason=reason)
        return result

    def _why(self, reason: str, err: EnvelopeError) -> str:
        """The explanation after `<reason>: `; a known key's refusal says which state."""
        if reason == err.code or not isinstance(self.trusted, TrustStore):
            return err.detail
        kid, store = err.key_id, self.trusted
        entry = store.keys[str(kid)]
        explained: dict[str, str] = {
            Reason.REVOKED_KEY: f"key {kid} was revoked (trust store v{store.version})",
            Reason.RETIRED_KEY: f"key {kid} was retired (trust store v{store.version})",
            Reason.EXPIRED_KEY: f"key {kid} expired at {entry.not_after}",
            Reason.KEY_NOT_YET_VALID: f"key {kid} is valid from {entry.not_before}",
        }
        return explained.get(reason, err.detail)

    def _check(self, cmd: Command, digest: bytes, now: float) -> CommandResult | None:
        """Checks 7 (the operation and its args) to 11 (replay), in order; the refusal,
        answered and reported, or None when the command may run (its id now recorded)."""
        allowance = self.clock_allowance
        code, detail, answer = None, "", None
        bad = malformed_detail(cmd, self.operations)
        if bad is None and (cmd.expires <= cmd.issued or cmd.expires - cmd.issued > MAX_VALIDITY):
            bad = (f"validity window {cmd.expires - cmd.issued:g}s: expected more than 0 "
                   f"and at most {MAX_VALIDITY:g}s")  # fmt: skip
        if bad is not None:
            code, detail = ResultCode.MALFORMED, bad
        elif cmd.target != self.gateway:
            code = ResultCode.WRONG_TARGET
            detail = f"command is for {cmd.target!r}, this is {self.gateway!r}"
        elif cmd.issued > now + allowance:
            code = ResultCode.NOT_YET_VALID
            detail = f"issued {cmd.issued - now:.1f}s in the future (allowance {allowance:g}s)"
        elif now > cmd.expires + allowance:
            code = ResultCode.EXPIRED
            detail = f"expired {now - cmd.expires:.1f}s ago (allowance {allowance:g}s)"
        else:
            first = self.replay.record(cmd.id, digest, cmd.expires + allowance)
            self.replay.purge(now - allowance)  # kept until expires + 2 x allowance
            if first is None:
                return None
            code = ResultCode.REPLAYED
            if first == digest:  # these very bytes were answered already: no second result
                detail, answer = "replayed: a copy of a command already answered", False
            else:
                detail = f"command id {cmd.id!r} was already used by command {first.hex()}"
        if not detail.startswith(f"{code}: "):
            detail = f"{code}: {detail}"
        result = CommandResult(cmd.id, code, detail, command_digest=digest)
        self._refuse(result, cmd.key_id, answer=answer)
        return result

    async def _run(self, cmd: Command) -> CommandResult:
        """Checks 12-13 for an operation that takes a device, then the operation."""
        if cmd.device is not None and OPERATIONS[cmd.op].device is DeviceRule.OPTIONAL:
            device = self._catalogue().get(cmd.device)
            if device is None:
                return _no_device(cmd)
            denied = self.policy.check_operation(device.device_type, cmd.op)
            if denied:
                return CommandResult(cmd.id, ResultCode.DENIED, denied)
        return await self.operations[cmd.op](cmd)

    async def _trust_update(self, cmd: Command) -> CommandResult:
        """Replace the trusted command-post keys; refusals are security events too."""
        assert isinstance(self.trusted, TrustStore)
        update = parse_trust_update(cmd.args)  # checked with the body: cannot fail here
        try:
            self.trusted.apply(update, self.clock())
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

    # --- answering ------------------------------------------------------------------

    def security_reports(self, now: float | None = None, *, everything: bool = False) -> int:
        """Send the security summaries that are due; returns how many."""
        now = self.clock() if now is None else now
        events = [*self.throttle.due(now, everything=everything),
                  *self.shedding.due(now, everything=everything)]  # fmt: skip
        if events:
            self._commit([Entry("event", int(e.priority), e.ts, event_entry(e)) for e in events])
        return len(events)

    async def report_security(self, every: float = 5.0) -> None:
        """Long-running: flush summaries whose window is over (a flood that stopped)."""
        while True:
            await asyncio.sleep(every)
            self.security_reports()

    def _refuse(
        self,
        result: CommandResult,
        key_id: str | None,
        *,
        reason: str | None = None,
        answer: bool | None = None,
        throttle: SecurityThrottle | None = None,
    ) -> None:
        """A refusal before the id was recorded: counted in a security event (throttled)
        and, within the budget, answered."""
        now = self.clock()
        self._count(result)
        answered, event = (throttle or self.throttle).note(
            str(result.code), now, result.detail, key_id, reason=reason, answer=answer
        )
        entries: list[Entry] = []
        if answered:
            entries.append(Entry("result", Priority.ALARM, now, result_entry(result, now)))
        if event is not None:
            entries.append(Entry("event", int(event.priority), now, event_entry(event)))
            log.warning("command.refused", code=str(result.code), command=result.command_id,
                        detail=result.detail, count=event.data["count"])  # fmt: skip
        else:
            log.debug("command.refused", code=str(result.code), answered=answered)
        if entries:
            self._commit(entries)

    def _answer(self, cmd: Command, result: CommandResult) -> None:
        """A command whose id was recorded: always answered, and audited."""
        now = self.clock()
        self._count(result)
        security = result.code == ResultCode.DENIED
        audit = Event("command.audit", "commands", now,
                      Severity.WARNING if security else Severity.INFO, None, {
                          "command": cmd.id, "digest": result.command_digest.hex(),
                          "code": str(result.code), "detail": result.detail, "op": cmd.op,
                          "device": cmd.device, "key_id": cmd.key_id,
                      })  # fmt: skip
        entries = [Entry("result", Priority.ALARM, now, result_entry(result, now)),
                   Entry("event", int(audit.priority), now, event_entry(audit))]  # fmt: skip
        if security:  # also counted with the other refusals of its kind
            _, event = self.throttle.note(str(result.code), now, result.detail, cmd.key_id,
                                          reason=self._trust_refusal, answer=True)  # fmt: skip
            if event is not None:
                entries.append(Entry("event", int(event.priority), now, event_entry(event)))
        # An answer is accepted like a reading: committed before we say so.
        self._commit(entries)
        (log.warning if security else log.info)(
            "command.answered", command=cmd.id, code=str(result.code), detail=result.detail
        )

    def _count(self, result: CommandResult) -> None:
        self.stats.by_code[result.code] = self.stats.by_code.get(result.code, 0) + 1

    def _commit(self, entries: list[Entry]) -> None:
        self.outbox.add(entries)
        self.outbox.commit()
        if self._on_answer:
            self._on_answer()


def _no_device(cmd: Command) -> CommandResult:
    return CommandResult(
        cmd.id, ResultCode.UNKNOWN_DEVICE, f"device {cmd.device!r} is not on this gateway"
    )
