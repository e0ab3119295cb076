"""Verify what arrives from the gateways: (topic, payload) in, a verdict out. No I/O.

Checks, in order: the topic is ours; the envelope opens (size, structure,
version, trusted key, signature, strict body); the key belongs to the gateway
that claims to speak (explicit binding, else the first gateway seen using it);
the body agrees with the topic; the sequence number is new. Duplicates are
reported and dropped; holes in the sequence are reported when they open and
listed by `missing()` until they fill or age out of the window — unless the
gateway accounted for them: an `outbox.evicted` or `outbox.corrupt` event names
the numbers that will never arrive (`first_seq`..`last_seq`), and those are
listed by `accounted()` instead.

A gateway that rotated its key says so in its state message: announcements of
the new key signed by the old one (docs/protocol.md §12). A state message
signed by a key we do not know is accepted only if such an announcement,
signed by a key already trusted *for that gateway*, vouches for it; the new key
is then trusted and bound to that gateway.

Several processes that must agree (ingest workers) share what each learned through a
store: a verdict names the keys it bound (`bound`), and `adopt` takes what the store
says of a key. The rules stay here; only where the bindings live changes.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import structlog

from cityedge.central.sequence import SeqStatus, SequenceTracker
from cityedge.protocol.announcements import (
    KeyAnnouncement,
    open_key_announcement,
    unverified_announcements,
)
from cityedge.protocol.commands import open_command
from cityedge.protocol.decoding import MAX_MESSAGE_BYTES, EnvelopeError, Reason
from cityedge.protocol.entries import Message
from cityedge.protocol.keys import PublicKey
from cityedge.protocol.opening import open_message
from cityedge.protocol.topics import DEFAULT_PREFIX, TopicError, parse_topic
from cityedge.sdk.model import Command

log = structlog.get_logger(__name__)

MAX_LOUD_SOURCES = 1000  # bound on the "already warned about" set
# Gateway events that name sequence numbers that will never arrive (docs/protocol.md).
GAP_EVENTS = frozenset({"outbox.evicted", "outbox.corrupt"})


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # a valid message seen before (or too old to tell): dropped
    REJECTED = "rejected"
    SKIPPED = "skipped"  # a command, and no command-post keys to check it with


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    topic: str
    reason: str | None = None  # a Reason value (or "stale"/"duplicate") when not accepted
    detail: str = ""
    message: Message | None = None
    command: Command | None = None
    gap: tuple[int, int] | None = None  # a hole in the sequence this message revealed
    late: bool = False  # it filled an earlier hole (backlog, resend)
    accounted: tuple[tuple[int, int], ...] = ()  # numbers it says will never arrive
    rotated: tuple[tuple[str, str], ...] = ()  # (old key id, new key id) learned from it
    bound: tuple[str, ...] = ()  # key ids this message bound to its gateway for the first time

    @property
    def accepted(self) -> bool:
        return self.outcome is Outcome.ACCEPTED


@dataclass(frozen=True, slots=True)
class Gap:
    gateway: str
    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass(slots=True)
class GatewayStats:
    messages: int = 0
    entries: int = 0
    historical_entries: int = 0
    duplicates: int = 0
    late: int = 0
    last_seq: int | None = None
    last_ts: float | None = None
    rejected: Counter[str] = field(default_factory=Counter)


class Verifier:
    """Stateful only in what it must remember: key bindings and sequence runs (bounded)."""

    def __init__(
        self,
        gateway_keys: Mapping[str, PublicKey],
        *,
        bindings: Mapping[str, str] | None = None,
        command_keys: Mapping[str, PublicKey] | None = None,
        prefix: str = DEFAULT_PREFIX,
        learn_bindings: bool = True,
        window: int = 1_000_000,
        max_holes: int = 1024,
        max_size: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.gateway_keys = dict(gateway_keys)
        self.bindings = dict(bindings or {})
        self.command_keys = None if command_keys is None else dict(command_keys)
        self.prefix = prefix
        self.learn_bindings = learn_bindings
        self.max_size = max_size
        self._window = window
        self._max_runs = max_holes + 1
        self._learned: dict[str, str] = {}
        self._sequences: dict[str, SequenceTracker] = {}
        self._stats: dict[str, GatewayStats] = {}
        self.rejected: Counter[str] = Counter()  # by reason, all sources
        self._loud: dict[str, set[str]] = {}  # source -> reasons already warned about
        self.retired: set[str] = set()  # keys never to be trusted again, announced or not
        self.rotations: list[KeyAnnouncement] = []  # accepted, oldest first (last 1000)
        # What the operator gave: `adopt` never overrides it.
        self._given_keys = frozenset(self.gateway_keys)
        self._given_bindings = frozenset(self.bindings)

    # --- the one entry point ------------------------------------------------------------

    def verify(self, topic: str, payload: bytes) -> Verdict:
        try:
            where = parse_topic(topic, self.prefix)
        except TopicError as exc:
            return self._reject(topic, topic, Reason.WRONG_TOPIC, str(exc))
        source = f"{where.site}/{where.gateway}"
        if where.kind == "command":
            return self._verify_command(topic, source, where.gateway, payload)
        try:
            message = open_message(payload, self.gateway_keys, max_size=self.max_size)
        except EnvelopeError as exc:
            if exc.code == Reason.UNKNOWN_KEY and where.kind == "state":
                rotated = self._rotation(topic, source, where.gateway, payload)
                if rotated is not None:
                    return rotated
            if exc.code == Reason.UNKNOWN_KEY and exc.key_id in self.retired:
                # docs/protocol.md's vocabulary: unknown-key, the precise reason first
                detail = f"{Reason.RETIRED_KEY}: key {exc.key_id} was retired"
                return self._reject(topic, source, Reason.UNKNOWN_KEY, detail)
            return self._reject(topic, source, exc.code, exc.detail)
        owner = self._owner(message.key_id)
        if owner is not None and owner != message.gateway:
            return self._reject(
                topic, source, Reason.WRONG_GATEWAY,
                f"key {message.key_id} belongs to gateway {owner!r}, "
                f"not {message.gateway!r}",
            )  # fmt: skip
        mismatch = [
            f"{name} {got!r} (topic says {want!r})"
            for name, got, want in (
                ("site", message.site, where.site),
                ("gateway", message.gateway, where.gateway),
                ("kind", message.kind, where.kind),
            )
            if got != want
        ]
        if mismatch:
            return self._reject(
                topic, source, Reason.WRONG_TOPIC, "body has " + ", ".join(mismatch)
            )
        learned = owner is None and self.learn_bindings
        if learned:
            self._learned[message.key_id] = message.gateway
        self._recovered(source)
        verdict = self._sequence(topic, message)
        return dataclasses.replace(verdict, bound=(message.key_id,)) if learned else verdict

    def _owner(self, kid: str) -> str | None:
        return self.bindings.get(kid) or self._learned.get(kid)

    def owner(self, kid: str) -> str | None:
        """The gateway `kid` is bound to here (given, learned or announced), if any."""
        return self._owner(kid)

    def adopt(self, kid: str, gateway: str | None, key: PublicKey | None = None) -> None:
        """Take what a store shared with other verifiers says of `kid`: the gateway that
        claimed it first (None: nobody, so what this instance learned of it is undone) and,
        for a key a rotation brought, the key itself (without it, a key this instance only
        learned is dropped). A key or binding given at start is the operator's and stays;
        a retired key is never trusted again."""
        if key is not None and kid not in self.retired:
            self.gateway_keys[kid] = key
        elif kid not in self._given_keys:
            self.gateway_keys.pop(kid, None)
        if kid in self._given_bindings:
            return
        self._learned.pop(kid, None)
        if gateway is None:
            self.bindings.pop(kid, None)
        else:
            self.bindings[kid] = gateway

    def _rotation(self, topic: str, source: str, gateway: str, payload: bytes) -> Verdict | None:
        """A state message signed by an unknown key that carries announcements: learn the
        new key if a key trusted for `gateway` vouches for it, and the state itself
        verifies with it (proof that the gateway holds the new private key)."""
        chain = unverified_announcements(payload)
        if not chain:
            return None
        keys = dict(self.gateway_keys)
        owners: dict[str, str] = {}
        learned: list[KeyAnnouncement] = []
        failure: tuple[str, str] | None = None
        for raw in chain:
            try:
                ann = open_key_announcement(raw, keys)
            except EnvelopeError as exc:
                failure = (exc.code, f"key announcement: {exc.detail}")
                continue  # an older link, signed by a key this command post never knew
            owner = self._owner(ann.key_id) or owners.get(ann.key_id)
            if ann.gateway != gateway:
                where = f"key announcement for {ann.gateway!r} on {gateway!r}'s topic"
                return self._reject(topic, source, Reason.WRONG_TOPIC, where)
            if owner is None and not self.learn_bindings:
                failure = (Reason.WRONG_GATEWAY, f"key {ann.key_id} is bound to no gateway")
                continue
            if owner is not None and owner != gateway:
                return self._reject(
                    topic, source, Reason.WRONG_GATEWAY,
                    f"key announcement signed by {ann.key_id}, a key of gateway {owner!r}: "
                    f"it cannot vouch for a key of {gateway!r}",
                )  # fmt: skip
            holder = self._owner(ann.new_key_id)
            if ann.new_key_id in self.retired or (holder is not None and holder != gateway):
                return self._reject(topic, source, Reason.WRONG_GATEWAY,
                                    f"announced key {ann.new_key_id} is retired or not "
                                    f"{gateway!r}'s")  # fmt: skip
            if ann.new_key_id in keys:
                continue  # known already (an old link of the chain)
            keys[ann.new_key_id] = ann.new_key
            owners[ann.new_key_id] = gateway
            learned.append(ann)
        if not learned:
            return None if failure is None else self._reject(topic, source, *failure)
        try:
            open_message(payload, keys, max_size=self.max_size)
        except EnvelopeError as exc:
            return self._reject(topic, source, exc.code,
                                f"state carrying a key announcement: {exc.detail}")  # fmt: skip
        bound: list[str] = []
        for ann in learned:
            if self._owner(ann.key_id) is None:
                bound.append(ann.key_id)
            bound.append(ann.new_key_id)
            self.gateway_keys[ann.new_key_id] = ann.new_key
            self.bindings[ann.new_key_id] = gateway
            self.bindings.setdefault(ann.key_id, gateway)
            self.rotations = [*self.rotations[-999:], ann]
            log.warning("central.key_rotated", gateway=gateway, old=ann.key_id,
                        new=ann.new_key_id)  # fmt: skip
        verdict = self.verify(topic, payload)
        pairs = tuple((ann.key_id, ann.new_key_id) for ann in learned)
        return dataclasses.replace(verdict, rotated=pairs, bound=(*bound, *verdict.bound))

    def given(self, kid: str) -> bool:
        """Whether the operator gave `kid` when this verifier was made."""
        return kid in self._given_keys

    def retire_key(self, kid: str) -> None:
        """Stop trusting a gateway key (e.g. the old one, once its backlog has drained),
        even one the operator gave; an announcement can never bring it back. Its binding
        stays: it still says whose key it was."""
        self.gateway_keys.pop(kid, None)
        self._learned.pop(kid, None)
        self.retired.add(kid)

    def _verify_command(self, topic: str, source: str, gateway: str, payload: bytes) -> Verdict:
        if self.command_keys is None:
            return Verdict(
                Outcome.SKIPPED, topic, detail="command not checked: no command-post keys given"
            )
        try:
            command = open_command(payload, self.command_keys)
        except EnvelopeError as exc:
            return self._reject(topic, source, exc.code, exc.detail)
        if command.target != gateway:
            return self._reject(
                topic, source, Reason.WRONG_TOPIC,
                f"command for {command.target!r} sent to gateway {gateway!r}",
            )  # fmt: skip
        return Verdict(Outcome.ACCEPTED, topic, command=command)

    def _sequence(self, topic: str, message: Message) -> Verdict:
        stats = self._stats.setdefault(message.gateway, GatewayStats())
        if message.kind == "state":  # state carries no sequence number of its own
            stats.last_ts = message.ts
            return Verdict(Outcome.ACCEPTED, topic, message=message)
        tracker = self._sequences.get(message.gateway)
        if tracker is None:
            tracker = SequenceTracker(window=self._window, max_runs=self._max_runs)
            self._sequences[message.gateway] = tracker
        # Before observing: the hole this very message opens may be the one it explains.
        accounted = tuple(_accounted_ranges(message))
        for first, last in accounted:
            tracker.account(first, last)
            log.warning("central.accounted", gateway=message.gateway, first=first, last=last)
        seen = tracker.observe(message.seq)
        if seen.status in (SeqStatus.DUPLICATE, SeqStatus.STALE):
            stats.duplicates += 1
            detail = (
                f"seq {message.seq} already delivered; dropped"
                if seen.status is SeqStatus.DUPLICATE
                else f"seq {message.seq} is below the window (from {tracker.floor}); dropped"
            )
            log.debug("central.duplicate", gateway=message.gateway, seq=message.seq)
            return Verdict(Outcome.DUPLICATE, topic, str(seen.status), detail, message=message)
        stats.messages += 1
        stats.entries += len(message.entries)
        if message.historical:
            stats.historical_entries += len(message.entries)
        stats.last_seq = tracker.high
        stats.last_ts = message.ts
        late = seen.status is SeqStatus.LATE
        stats.late += late
        if seen.opened is not None:
            first, last = seen.opened
            log.info("central.gap", gateway=message.gateway, first=first, last=last)
        return Verdict(
            Outcome.ACCEPTED, topic, message=message, gap=seen.opened, late=late,
            accounted=accounted,
        )  # fmt: skip

    # --- rejection bookkeeping -------------------------------------------------------------

    def _reject(self, topic: str, source: str, reason: str, detail: str) -> Verdict:
        self.rejected[reason] += 1
        gateway = source.rpartition("/")[2]
        if gateway in self._stats:  # only gateways we know, so a flood cannot grow this
            self._stats[gateway].rejected[reason] += 1
        # Loud the first time a source fails for a reason, quiet until it recovers.
        reasons = self._loud.get(source)
        if reasons is None and len(self._loud) < MAX_LOUD_SOURCES:
            reasons = self._loud[source] = set()
        if reasons is not None and reason not in reasons:
            reasons.add(reason)
            log.warning("central.rejected", topic=topic, reason=reason, detail=detail)
        else:
            log.debug("central.rejected", topic=topic, reason=reason, detail=detail)
        return Verdict(Outcome.REJECTED, topic, reason, detail)

    def _recovered(self, source: str) -> None:
        reasons = self._loud.pop(source, None)
        if reasons:
            log.info("central.recovered", source=source, after=sorted(reasons))

    # --- what the command post may ask --------------------------------------------------

    def missing(self) -> list[Gap]:
        """Current holes in every gateway's sequence (they may still fill: backlog, resends)."""
        return [
            Gap(gateway, first, last)
            for gateway, tracker in sorted(self._sequences.items())
            for first, last in tracker.missing()
        ]

    def accounted(self) -> list[Gap]:
        """Numbers each gateway said will never arrive (evicted, lost with a store)."""
        return [
            Gap(gateway, first, last)
            for gateway, tracker in sorted(self._sequences.items())
            for first, last in tracker.accounted()
        ]

    def stats(self) -> dict[str, GatewayStats]:
        return dict(self._stats)

    def forget(self, gateway: str) -> None:
        """Drop what is known of a gateway's sequence (e.g. it was re-installed from scratch)."""
        self._sequences.pop(gateway, None)
        for kid in [k for k, g in self._learned.items() if g == gateway]:
            del self._learned[kid]


def _accounted_ranges(message: Message) -> list[tuple[int, int]]:
    ranges = []
    for event in message.events:
        if event.kind in GAP_EVENTS and isinstance(event.data, Mapping):
            first, last = event.data.get("first_seq"), event.data.get("last_seq")
            if type(first) is int and type(last) is int and 0 < first <= last:
                ranges.append((first, last))
    return ranges


def as_verifier(trusted: Mapping[str, PublicKey] | Verifier, prefix: str) -> Verifier:
    """`trusted` itself if it is a Verifier (its state carries over), else a new one."""
    return trusted if isinstance(trusted, Verifier) else Verifier(trusted, prefix=prefix)
