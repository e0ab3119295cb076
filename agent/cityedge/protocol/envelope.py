"""Signed MessagePack envelopes: what goes over MQTT, byte for byte (docs/protocol.md).

Outer form, a MessagePack map with four keys in this order:

    {"v": 1, "kid": <16 hex digits>, "body": <bin: MessagePack body>, "sig": <bin 64>}

`sig` is Ed25519 over `CONTEXT || body`, where `body` is exactly the bytes of
the bin field and CONTEXT says what kind of thing was signed (a gateway
message or a command), so a signature can never be replayed as the other.
The verifier checks the signature over the bytes it received and only then
decodes them: nothing is re-encoded on the way.

Entries (one reading, event or command result) are encoded once, when they
enter the outbox; `seal` builds a body by writing MessagePack headers and
concatenating the stored entry bytes, never decoding them again.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, Final, TypedDict, TypeVar, cast

import msgpack

from cityedge.protocol.keys import KEY_ID_PATTERN, PublicKey, SigningKey
from cityedge.sdk.model import (
    Command,
    CommandResult,
    Event,
    Quality,
    Reading,
    ResultCode,
    Severity,
    Value,
)

ENVELOPE_VERSION: Final = 1
MESSAGE_CONTEXT: Final = b"cityedge/v1/gateway-message\x00"
COMMAND_CONTEXT: Final = b"cityedge/v1/command\x00"
ANNOUNCEMENT_CONTEXT: Final = b"cityedge/v1/key-announcement\x00"

ENTRY_KINDS: Final = ("telemetry", "event", "result")  # body.data is an array of entries
OBJECT_KINDS: Final = ("state",)  # body.data is a map
MESSAGE_KINDS: Final = ENTRY_KINDS + OBJECT_KINDS
COMMAND_KIND: Final = "command"
ANNOUNCEMENT_KIND: Final = "key-announcement"

MAX_MESSAGE_BYTES: Final = 1 << 20
MAX_COMMAND_BYTES: Final = 64 * 1024
MAX_ANNOUNCEMENT_BYTES: Final = 1024
MAX_ANNOUNCEMENTS: Final = 8  # a chain of rotations carried in one state message
MAX_SEQ: Final = (1 << 63) - 1
MAX_COMMAND_ID: Final = 128
MAX_DETAIL: Final = 4096
MAX_NESTING: Final = 32  # containers in free-form maps; deeper ones are sent as text
SIGNATURE_BYTES: Final = 64
_VALUE_TYPES: Final = (bool, int, float, str)
_TIME_TYPES: Final = (int, float)
NAME_PATTERN: Final = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # gateway and site ids (topic-safe)

_ENVELOPE_KEYS = frozenset({"v", "kid", "body", "sig"})
_BODY_KEYS = frozenset({"v", "gw", "site", "kind", "seq", "ts", "hist", "data"})
_ANNOUNCEMENT_KEYS = frozenset({"v", "kind", "gw", "new_kid", "new_key", "ts"})
_COMMAND_KEYS = frozenset(
    {"v", "kind", "id", "target", "device", "op", "args", "issued", "expires"}
)


class Reason(StrEnum):
    """Why a payload was refused; stable strings, listed in docs/protocol.md."""

    TOO_LARGE = "too-large"
    MALFORMED = "malformed"
    UNSUPPORTED_VERSION = "unsupported-version"
    UNKNOWN_KEY = "unknown-key"
    BAD_SIGNATURE = "bad-signature"
    WRONG_GATEWAY = "wrong-gateway"  # key bound to another gateway
    WRONG_TOPIC = "wrong-topic"  # body disagrees with the topic it came on
    # A key the gateway's trust store knows but will not use now (docs/protocol.md §11).
    REVOKED_KEY = "revoked-key"
    RETIRED_KEY = "retired-key"
    EXPIRED_KEY = "expired-key"
    KEY_NOT_YET_VALID = "key-not-yet-valid"


_RESULT_CODE_BY_REASON: dict[str, ResultCode] = {
    Reason.UNKNOWN_KEY: ResultCode.UNKNOWN_KEY,
    # Result codes are a closed v1 enumeration: these answer `unknown-key`, and the
    # detail starts with the precise reason.
    Reason.REVOKED_KEY: ResultCode.UNKNOWN_KEY,
    Reason.RETIRED_KEY: ResultCode.UNKNOWN_KEY,
    Reason.EXPIRED_KEY: ResultCode.UNKNOWN_KEY,
    Reason.KEY_NOT_YET_VALID: ResultCode.UNKNOWN_KEY,
    Reason.BAD_SIGNATURE: ResultCode.BAD_SIGNATURE,
    Reason.WRONG_GATEWAY: ResultCode.WRONG_TARGET,
    Reason.WRONG_TOPIC: ResultCode.WRONG_TARGET,
}


class EnvelopeError(Exception):
    """A payload that was refused. `code` is a `Reason` value; `detail` says where and why."""

    def __init__(self, code: str, detail: str, key_id: str | None = None) -> None:
        self.code = code
        self.detail = detail
        self.key_id = key_id  # the envelope's kid, once it was read
        super().__init__(f"{code}: {detail}")

    @property
    def result_code(self) -> ResultCode:
        """The command result a gateway answers with when a command is refused for this."""
        return _RESULT_CODE_BY_REASON.get(self.code, ResultCode.MALFORMED)


def _malformed(detail: str) -> EnvelopeError:
    return EnvelopeError(Reason.MALFORMED, detail)


# --- entries: encoded once, when they enter the outbox ---------------------------------
#
# What an encoder writes, `open_message` accepts: one bad entry would otherwise
# poison a whole message of 500. Text from the outside world (device names,
# values, event data) is coerced into what MessagePack carries (text for odd
# types, integers beyond 64 bits, lone surrogates); values only code can get
# wrong (a severity that is not a Severity, a NaN timestamp) raise ValueError.


def reading_entry(r: Reading) -> bytes:
    """`[device, point, value, ts, unit, quality]`; trailing defaults (unit nil,
    quality "good") are left out, so most readings are 4-element arrays."""
    # The pipeline calls this for every reading: plain types take the short way.
    value = r.value if type(r.value) in _VALUE_TYPES else _point_value(r.value)
    ts = r.ts if type(r.ts) is float else float(r.ts)
    if not math.isfinite(ts):
        raise ValueError(f"reading ts {r.ts!r}: expected a finite number of seconds")
    fields: list[Any] = [str(r.device), str(r.point), value, ts]
    unit = r.unit if r.unit is None or type(r.unit) is str else str(r.unit)
    if r.quality is not Quality.GOOD and Quality(r.quality) is not Quality.GOOD:
        fields += [unit, Quality(r.quality).value]
    elif unit is not None:
        fields.append(unit)
    return _pack_total(fields)


def event_entry(e: Event) -> bytes:
    """`[kind, source, ts, severity, active, data]`; trailing defaults (severity
    "info", active nil, data {}) are left out."""
    if e.active is not None and type(e.active) is not bool:
        raise ValueError(f"event {e.kind}: active must be True, False or None")
    fields: list[Any] = [
        str(e.kind), str(e.source), _finite(e.ts, "event ts"), Severity(e.severity).value,
        e.active, _carryable(e.data, 0),
    ]  # fmt: skip
    return _pack_total(_trim(fields, (Severity.INFO.value, None, {})))


def result_entry(r: CommandResult, ts: float) -> bytes:
    """`[command_id, code, ts, detail, readback, readback_matched, data]`; trailing
    defaults ("", nil, nil, {}) are left out. Id and detail are cut to their limits."""
    readback = r.readback
    if readback is not None and type(readback) not in _VALUE_TYPES:
        readback = _point_value(readback)
    if r.readback_matched is not None and type(r.readback_matched) is not bool:
        raise ValueError(f"result {r.command_id}: readback_matched must be a bool or None")
    fields: list[Any] = [
        str(r.command_id)[:MAX_COMMAND_ID], ResultCode(r.code).value, _finite(ts, "result ts"),
        str(r.detail)[:MAX_DETAIL], readback, r.readback_matched, _carryable(r.data, 0),
    ]  # fmt: skip
    return _pack_total(_trim(fields, ("", None, None, {})))


def _finite(ts: float, what: str) -> float:
    value = float(ts)
    if not math.isfinite(value):
        raise ValueError(f"{what} {ts!r}: expected a finite number of seconds")
    return value


def _trim(fields: list[Any], defaults: tuple[Any, ...]) -> list[Any]:
    """Drop trailing fields equal to their defaults (the fields before them are required)."""
    end = len(fields)
    required = len(fields) - len(defaults)
    while end > required and _is_default(fields[end - 1], defaults[end - 1 - required]):
        end -= 1
    return fields[:end]


def _is_default(value: Any, default: Any) -> bool:
    return type(value) is type(default) and value == default


def _pack_total(obj: Any) -> bytes:
    """Pack; on what MessagePack refuses (an int beyond 64 bits, a lone surrogate),
    pack a coerced copy instead: an entry is never lost to encoding."""
    try:
        return cast(bytes, msgpack.packb(obj))
    except (ValueError, TypeError, OverflowError):
        return cast(bytes, msgpack.packb(_carryable(obj, 0)))


def _point_value(value: Any) -> Value:
    """A point value of a subclass (numpy float, IntEnum…) as its plain type, else as text."""
    plain = _carryable(value, 0)
    return plain if type(plain) in _VALUE_TYPES else str(value)


def _carryable(obj: Any, depth: int) -> Any:
    """A copy made of plain MessagePack values with text keys, as `open_message` wants."""
    if depth > MAX_NESTING and isinstance(obj, list | tuple | Mapping | set | frozenset):
        return f"({type(obj).__name__} nested deeper than {MAX_NESTING} levels)"
    if isinstance(obj, Enum):
        obj = obj.value
    if obj is None or isinstance(obj, bool):
        return obj if obj is None else bool(obj)
    if isinstance(obj, int):
        number = int(obj)
        return number if -(1 << 63) <= number < (1 << 64) else str(number)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        text = str(obj)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return text.encode("utf-8", "replace").decode("utf-8")
        return text
    if isinstance(obj, bytes | bytearray | memoryview):
        return bytes(obj)
    if isinstance(obj, list | tuple):
        return [_carryable(v, depth + 1) for v in obj]
    if isinstance(obj, Mapping):
        return {str(_carryable(k, depth + 1)): _carryable(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, set | frozenset):
        return sorted(str(_carryable(v, depth + 1)) for v in obj)
    return _carryable(str(obj), depth + 1)


# --- sealing ---------------------------------------------------------------------------

_K = {
    name: msgpack.packb(name) for name in ("v", "gw", "site", "kind", "seq", "ts", "hist", "data")
}
_BODY_START = b"\x88" + _K["v"] + msgpack.packb(ENVELOPE_VERSION) + _K["gw"]  # map of 8


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _body_head(gateway: str, site: str, kind: str, seq: int, ts: float, historical: bool) -> bytes:
    if NAME_PATTERN.match(gateway) is None:
        raise ValueError(f"gateway id {gateway!r}: expected 1-64 of A-Z a-z 0-9 _ . -")
    if NAME_PATTERN.match(site) is None:
        raise ValueError(f"site {site!r}: expected 1-64 of A-Z a-z 0-9 _ . -")
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"seq {seq}: expected 0..2^63-1")
    return b"".join((
        _BODY_START, msgpack.packb(gateway),
        _K["site"], msgpack.packb(site),
        _K["kind"], msgpack.packb(kind),
        _K["seq"], msgpack.packb(seq),
        _K["ts"], msgpack.packb(float(ts)),
        _K["hist"], b"\xc3" if historical else b"\xc2",
        _K["data"],
    ))  # fmt: skip


def _wrap(key: SigningKey, body: bytes, context: bytes) -> bytes:
    signature = key.sign(context + body)
    envelope = {"v": ENVELOPE_VERSION, "kid": key.key_id, "body": body, "sig": signature}
    return cast(bytes, msgpack.packb(envelope))


def seal(
    key: SigningKey,
    *,
    gateway: str,
    site: str,
    kind: str,
    seq: int,
    ts: float,
    historical: bool,
    entries: Sequence[bytes],
) -> bytes:
    """One signed message carrying already-encoded entries (their bytes are concatenated)."""
    return seal_joined(
        key,
        gateway=gateway,
        site=site,
        kind=kind,
        seq=seq,
        ts=ts,
        historical=historical,
        entries=b"".join(entries),
        count=len(entries),
    )


def seal_joined(
    key: SigningKey,
    *,
    gateway: str,
    site: str,
    kind: str,
    seq: int,
    ts: float,
    historical: bool,
    entries: bytes,
    count: int,
) -> bytes:
    """`seal` for `count` entries whose encoded bytes are already concatenated, as the
    outbox stores them: the message is built without touching each entry."""
    if kind not in ENTRY_KINDS:
        raise ValueError(f"kind {kind!r}: entries travel as one of {', '.join(ENTRY_KINDS)}")
    head = _body_head(gateway, site, kind, seq, ts, historical)
    return _wrap(key, b"".join((head, _array_header(count), entries)), MESSAGE_CONTEXT)


def message_sealer(key: SigningKey, *, gateway: str, site: str) -> Callable[..., bytes]:
    """The outbox's sealer (agent.outbox.Sealer): this gateway's entry messages,
    stamped with the time they are sealed."""
    _body_head(gateway, site, "telemetry", 0, 0.0, False)  # refuse bad names now, not per message

    def seal_entries(*, kind: str, seq: int, historical: bool, entries: bytes, count: int) -> bytes:
        return seal_joined(
            key,
            gateway=gateway,
            site=site,
            kind=kind,
            seq=seq,
            ts=time.time(),
            historical=historical,
            entries=entries,
            count=count,
        )

    return seal_entries


def seal_object(
    key: SigningKey, *, gateway: str, site: str, kind: str, seq: int, ts: float, data: Any
) -> bytes:
    """One signed message whose data is a map (the retained state / birth message)."""
    if kind not in OBJECT_KINDS:
        raise ValueError(f"kind {kind!r}: a map travels as one of {', '.join(OBJECT_KINDS)}")
    if not isinstance(data, Mapping):
        raise ValueError(f"data of a {kind!r} message must be a map, got {type(data).__name__}")
    if not isinstance(data.get("status"), str):
        raise ValueError(f"data of a {kind!r} message needs a 'status' text")
    head = _body_head(gateway, site, kind, seq, ts, False)
    return _wrap(key, head + _pack_total(_carryable(data, 0)), MESSAGE_CONTEXT)


def seal_command(key: SigningKey, cmd: Command) -> bytes:
    """A command signed by a command-post key. `cmd.key_id` is not sent: the
    envelope's `kid` names the signer (and `open_command` fills it in)."""
    for name, value in (("id", cmd.id), ("op", cmd.op)):
        if not isinstance(value, str) or not 0 < len(value) <= MAX_COMMAND_ID:
            raise ValueError(f"command {name} {value!r}: expected 1-{MAX_COMMAND_ID} characters")
    if NAME_PATTERN.match(cmd.target) is None:
        raise ValueError(f"command target {cmd.target!r}: expected a gateway id")
    body = {
        "v": ENVELOPE_VERSION,
        "kind": COMMAND_KIND,
        "id": cmd.id,
        "target": cmd.target,
        "device": cmd.device,
        "op": cmd.op,
        "args": _carryable(cmd.args, 0),
        "issued": _finite(cmd.issued, "command issued"),
        "expires": _finite(cmd.expires, "command expires"),
    }
    return _wrap(key, _pack_total(body), COMMAND_CONTEXT)


# --- opening -----------------------------------------------------------------------


class ResultEntry(TypedDict):
    """A command result as carried in a `result` message."""

    command_id: str
    code: ResultCode
    ts: float
    detail: str
    readback: Value | None
    readback_matched: bool | None
    data: dict[str, Any]


Entry = Reading | Event | ResultEntry


@dataclass(frozen=True, slots=True)
class Message:
    """A verified gateway message. `data` holds the decoded entries (Reading, Event
    or ResultEntry, by kind) or, for `state`, the map; `raw_body` the signed bytes."""

    key_id: str
    gateway: str
    site: str
    kind: str
    seq: int
    ts: float
    historical: bool
    data: list[Entry] | dict[str, Any]
    raw_body: bytes

    @property
    def entries(self) -> list[Entry]:
        return self.data if isinstance(self.data, list) else []

    @property
    def readings(self) -> list[Reading]:
        return [e for e in self.entries if isinstance(e, Reading)]

    @property
    def events(self) -> list[Event]:
        return [e for e in self.entries if isinstance(e, Event)]

    @property
    def results(self) -> list[ResultEntry]:
        return [e for e in self.entries if isinstance(e, dict)]

    @property
    def state(self) -> dict[str, Any]:
        return self.data if isinstance(self.data, dict) else {}


def command_result(entry: ResultEntry) -> CommandResult:
    return CommandResult(
        command_id=entry["command_id"],
        code=entry["code"],
        detail=entry["detail"],
        readback=entry["readback"],
        readback_matched=entry["readback_matched"],
        data=entry["data"],
    )


def open_message(
    payload: bytes, trusted: Mapping[str, PublicKey], *, max_size: int = MAX_MESSAGE_BYTES
) -> Message:
    """Verify and decode a gateway message; raises `EnvelopeError`.

    Checks run in the order of docs/protocol.md: size, envelope structure,
    version, key, signature, then the body, strictly (a malformed entry is an
    error naming its index).
    """
    kid, body = _open_envelope(payload, trusted, max_size, MESSAGE_CONTEXT)
    fields = _unpack(body, "body")
    _expect_map(fields, _BODY_KEYS, "body")
    _expect_version(fields["v"], "body.v")
    kind = fields["kind"]
    if kind not in MESSAGE_KINDS:
        raise _malformed(f"body.kind: expected one of {', '.join(MESSAGE_KINDS)}, got {kind!r}")
    seq = fields["seq"]
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise _malformed(f"body.seq: expected an integer 0..2^63-1, got {_show(seq)}")
    if type(fields["hist"]) is not bool:
        raise _malformed(f"body.hist: expected a boolean, got {_show(fields['hist'])}")
    data: list[Entry] | dict[str, Any]
    if kind in OBJECT_KINDS:
        data = _plain_map(fields["data"], "body.data")
        if kind == "state" and not isinstance(data.get("status"), str):
            raise _malformed("body.data.status: a state message needs a status text")
    else:
        raw = fields["data"]
        if not isinstance(raw, list):
            raise _malformed(f"body.data: expected an array of entries, got {_show(raw)}")
        decode = _ENTRY_DECODERS[kind]
        data = [decode(entry, f"body.data[{i}]") for i, entry in enumerate(raw)]
    return Message(
        key_id=kid,
        gateway=_name(fields["gw"], "body.gw"),
        site=_name(fields["site"], "body.site"),
        kind=kind,
        seq=seq,
        ts=_time(fields["ts"], "body.ts"),
        historical=fields["hist"],
        data=data,
        raw_body=body,
    )


def open_command(
    payload: bytes, trusted: Mapping[str, PublicKey], *, max_size: int = MAX_COMMAND_BYTES
) -> Command:
    """Verify and decode a command; raises `EnvelopeError` (malformed, unsupported-version,
    unknown-key, bad-signature). Expiry, target and replay are the gateway's checks."""
    kid, body = _open_envelope(payload, trusted, max_size, COMMAND_CONTEXT)
    fields = _unpack(body, "body")
    _expect_map(fields, _COMMAND_KEYS, "body")
    _expect_version(fields["v"], "body.v")
    if fields["kind"] != COMMAND_KIND:
        raise _malformed(f"body.kind: expected 'command', got {_show(fields['kind'])}")
    device = fields["device"]
    if device is not None:
        device = _text(device, "body.device")
    issued = _time(fields["issued"], "body.issued")
    expires = _time(fields["expires"], "body.expires")
    if expires < issued:
        raise _malformed(f"body.expires ({expires}) is before body.issued ({issued})")
    return Command(
        id=_text(fields["id"], "body.id", limit=MAX_COMMAND_ID, empty=False),
        target=_name(fields["target"], "body.target"),
        device=device,
        op=_text(fields["op"], "body.op", limit=MAX_COMMAND_ID, empty=False),
        args=_plain_map(fields["args"], "body.args"),
        issued=issued,
        expires=expires,
        key_id=kid,
    )


# --- gateway key announcements (docs/protocol.md §12) -----------------------------------


@dataclass(frozen=True, slots=True)
class KeyAnnouncement:
    """A gateway's new key, vouched for by its previous key (`key_id`)."""

    key_id: str  # the old key, which signed this
    gateway: str
    new_key_id: str
    new_key: PublicKey
    ts: float


def seal_key_announcement(old: SigningKey, new_key: PublicKey, *, gateway: str, ts: float) -> bytes:
    """The announcement of `new_key`, signed by the gateway's current key `old`."""
    if NAME_PATTERN.match(gateway) is None:
        raise ValueError(f"gateway id {gateway!r}: expected 1-64 of A-Z a-z 0-9 _ . -")
    body = {
        "v": ENVELOPE_VERSION,
        "kind": ANNOUNCEMENT_KIND,
        "gw": gateway,
        "new_kid": new_key.key_id,
        "new_key": new_key.raw,
        "ts": _finite(ts, "announcement ts"),
    }
    return _wrap(old, _pack_total(body), ANNOUNCEMENT_CONTEXT)


def open_key_announcement(payload: bytes, trusted: Mapping[str, PublicKey]) -> KeyAnnouncement:
    """Verify an announcement with the keys trusted for gateways; raises `EnvelopeError`.
    Whether the signer belongs to the announced gateway is the verifier's check."""
    kid, body = _open_envelope(payload, trusted, MAX_ANNOUNCEMENT_BYTES, ANNOUNCEMENT_CONTEXT)
    fields = _unpack(body, "announcement")
    _expect_map(fields, _ANNOUNCEMENT_KEYS, "announcement")
    _expect_version(fields["v"], "announcement.v")
    if fields["kind"] != ANNOUNCEMENT_KIND:
        raise _malformed(f"announcement.kind: expected {ANNOUNCEMENT_KIND!r}")
    raw = fields["new_key"]
    if not isinstance(raw, bytes) or len(raw) != 32:
        raise _malformed(f"announcement.new_key: expected 32 bytes of bin, got {_show(raw)}")
    try:
        new_key = PublicKey(raw)
    except ValueError as err:
        raise _malformed(f"announcement.new_key: {err}") from None
    new_kid = new_key.key_id
    if fields["new_kid"] != new_kid:
        raise _malformed(f"announcement.new_kid: {_show(fields['new_kid'])} is not {new_kid}")
    if new_kid == kid:
        raise _malformed("announcement: the new key is the signing key")
    return KeyAnnouncement(
        kid, _name(fields["gw"], "announcement.gw"), new_kid, new_key,
        _time(fields["ts"], "announcement.ts"),
    )  # fmt: skip


def unverified_announcements(payload: bytes) -> list[bytes]:
    """The `key_announcements` a state message carries, read WITHOUT checking its
    signature: only to find announcements, each verified on its own, and then the
    message itself is verified with the key they vouch for."""
    try:
        outer = _unpack(bytes(payload[:MAX_MESSAGE_BYTES]), "envelope")
        body = _unpack(outer["body"], "body") if isinstance(outer, dict) else None
        data = body.get("data") if isinstance(body, dict) else None
        chain = data.get("key_announcements") if isinstance(data, dict) else None
    except (EnvelopeError, KeyError, TypeError):
        return []
    if not isinstance(chain, list):
        return []
    return [item for item in chain[:MAX_ANNOUNCEMENTS] if isinstance(item, bytes)]


def _open_envelope(
    payload: bytes, trusted: Mapping[str, PublicKey], max_size: int, context: bytes
) -> tuple[str, bytes]:
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise _malformed(f"payload: expected bytes, got {type(payload).__name__}")
    if len(payload) > max_size:
        raise EnvelopeError(Reason.TOO_LARGE, f"payload is {len(payload)} bytes, limit {max_size}")
    outer = _unpack(bytes(payload), "envelope")
    if not isinstance(outer, dict) or "v" not in outer:
        raise _malformed(f"envelope: expected a map with a 'v' field, got {_show(outer)}")
    _expect_version(outer["v"], "envelope.v")
    _expect_map(outer, _ENVELOPE_KEYS, "envelope")
    kid, body, sig = outer["kid"], outer["body"], outer["sig"]
    if not isinstance(kid, str) or KEY_ID_PATTERN.match(kid) is None:
        raise _malformed(f"envelope.kid: expected 16 lowercase hex digits, got {_show(kid)}")
    if not isinstance(body, bytes):
        raise _malformed(f"envelope.body: expected bin, got {_show(body)}")
    if not isinstance(sig, bytes) or len(sig) != SIGNATURE_BYTES:
        raise _malformed(f"envelope.sig: expected 64 bytes of bin, got {_show(sig)}")
    public = trusted.get(kid)
    if public is None:
        raise EnvelopeError(Reason.UNKNOWN_KEY, f"key {kid} is not trusted here", kid)
    if not public.verify(sig, context + body):
        raise EnvelopeError(
            Reason.BAD_SIGNATURE,
            f"signature does not verify with key {kid} ({len(body)}-byte body)",
            kid,
        )
    return kid, body


# --- strict decoding helpers ---------------------------------------------------------------


def _unique_keys(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    # Duplicate keys would let two decoders read one signed body two ways.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate map key")
    return result


def _unpack(data: bytes, where: str) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, object_pairs_hook=_unique_keys)
    except Exception as exc:  # msgpack raises a zoo (ValueError, TypeError, OutOfData, …)
        raise _malformed(f"{where}: not valid MessagePack ({type(exc).__name__}: {exc})") from None


def _expect_version(v: Any, where: str) -> None:
    if type(v) is not int:
        raise _malformed(f"{where}: expected an integer version, got {_show(v)}")
    if v != ENVELOPE_VERSION:
        raise EnvelopeError(
            Reason.UNSUPPORTED_VERSION, f"{where} is {v}; this side speaks {ENVELOPE_VERSION}"
        )


def _expect_map(obj: Any, keys: frozenset[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise _malformed(f"{where}: expected a map, got {_show(obj)}")
    if obj.keys() != keys:
        missing = sorted(keys - obj.keys())
        extra = sorted(map(str, obj.keys() - keys))
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(extra)}"] if extra else []
        )
        raise _malformed(f"{where}: {'; '.join(parts)}")


def _show(value: Any) -> str:
    if isinstance(value, list | dict):  # never repr a hostile structure whole
        return f"{type(value).__name__} of {len(value)}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '…'}"


def _text(value: Any, where: str, *, limit: int | None = None, empty: bool = True) -> str:
    # Entry texts have no length limit of their own (the payload bound caps them)
    # and may be empty: the encoders do not refuse such readings either.
    if not isinstance(value, str):
        raise _malformed(f"{where}: expected text, got {_show(value)}")
    if not value and not empty:
        raise _malformed(f"{where}: must not be empty")
    if limit is not None and len(value) > limit:
        raise _malformed(f"{where}: longer than {limit} characters")
    return value


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or NAME_PATTERN.match(value) is None:
        raise _malformed(f"{where}: expected 1-64 of A-Z a-z 0-9 _ . -, got {_show(value)}")
    return value


def _time(value: Any, where: str) -> float:
    # Integers are accepted: some MessagePack libraries write 1700000000.0 as an int.
    if type(value) not in (int, float) or not math.isfinite(value):
        raise _malformed(f"{where}: expected a finite number of seconds, got {_show(value)}")
    return float(value)


def _value(value: Any, where: str) -> Value:
    if type(value) not in (bool, int, float, str):
        raise _malformed(f"{where}: expected bool, int, float or text, got {_show(value)}")
    return cast(Value, value)


def _optional_value(value: Any, where: str) -> Value | None:
    return None if value is None else _value(value, where)


def _optional_bool(value: Any, where: str) -> bool | None:
    if value is not None and type(value) is not bool:
        raise _malformed(f"{where}: expected a boolean or nil, got {_show(value)}")
    return value


def _plain(value: Any, where: str, depth: int) -> None:
    """Only plain MessagePack values in free-form maps: no ext types, no timestamps,
    containers nested at most MAX_NESTING deep."""
    if value is None or type(value) in (bool, int, float, str, bytes):
        return
    if isinstance(value, list | dict) and depth > MAX_NESTING:
        raise _malformed(f"{where}: nested deeper than {MAX_NESTING} levels")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _plain(item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        _plain_map(value, where, depth)
        return
    raise _malformed(f"{where}: unsupported MessagePack type ({type(value).__name__})")


def _plain_map(value: Any, where: str, depth: int = 0) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _malformed(f"{where}: expected a map, got {_show(value)}")
    for k, v in value.items():
        if not isinstance(k, str):
            raise _malformed(f"{where}: keys must be text, got {_show(k)}")
        _plain(v, f"{where}.{k}", depth + 1)
    return value


def _array(value: Any, where: str, smallest: int, largest: int) -> list[Any]:
    if not isinstance(value, list) or not smallest <= len(value) <= largest:
        raise _malformed(
            f"{where}: expected an array of {smallest}-{largest} fields, got {_show(value)}"
        )
    return value


_E = TypeVar("_E", bound=StrEnum)


def _choice(enum: type[_E], value: Any, where: str) -> _E:
    try:
        return enum(value) if isinstance(value, str) else enum("\0")
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise _malformed(f"{where}: expected one of {allowed}, got {_show(value)}") from None


def _decode_reading(entry: Any, where: str) -> Reading:
    # Fast path for the common shapes; anything unusual goes the careful way below,
    # which also names the field that is wrong.
    if type(entry) is list and 4 <= len(entry) <= 5:
        device, point, value, ts = entry[0], entry[1], entry[2], entry[3]
        unit = entry[4] if len(entry) == 5 else None
        if (
            type(device) is str
            and type(point) is str
            and type(value) in _VALUE_TYPES
            and type(ts) in _TIME_TYPES
            and math.isfinite(ts)
            and (unit is None or type(unit) is str)
        ):
            return Reading(device, point, value, float(ts), unit)
    f = _array(entry, where, 4, 6)
    unit = f[4] if len(f) > 4 else None
    if unit is not None:
        unit = _text(unit, f"{where}.unit")
    return Reading(
        device=_text(f[0], f"{where}.device"),
        point=_text(f[1], f"{where}.point"),
        value=_value(f[2], f"{where}.value"),
        ts=_time(f[3], f"{where}.ts"),
        unit=unit,
        quality=_choice(Quality, f[5], f"{where}.quality") if len(f) > 5 else Quality.GOOD,
    )


def _decode_event(entry: Any, where: str) -> Event:
    f = _array(entry, where, 3, 6)
    return Event(
        kind=_text(f[0], f"{where}.kind"),
        source=_text(f[1], f"{where}.source"),
        ts=_time(f[2], f"{where}.ts"),
        severity=_choice(Severity, f[3], f"{where}.severity") if len(f) > 3 else Severity.INFO,
        active=_optional_bool(f[4], f"{where}.active") if len(f) > 4 else None,
        data=_plain_map(f[5], f"{where}.data") if len(f) > 5 else {},
    )


def _decode_result(entry: Any, where: str) -> ResultEntry:
    f = _array(entry, where, 3, 7)
    return ResultEntry(
        command_id=_text(f[0], f"{where}.command_id", limit=MAX_COMMAND_ID),
        code=_choice(ResultCode, f[1], f"{where}.code"),
        ts=_time(f[2], f"{where}.ts"),
        detail=_text(f[3], f"{where}.detail", limit=MAX_DETAIL) if len(f) > 3 else "",
        readback=_optional_value(f[4], f"{where}.readback") if len(f) > 4 else None,
        readback_matched=_optional_bool(f[5], f"{where}.readback_matched") if len(f) > 5 else None,
        data=_plain_map(f[6], f"{where}.data") if len(f) > 6 else {},
    )


_ENTRY_DECODERS: dict[str, Callable[[Any, str], Entry]] = {
    "telemetry": _decode_reading,
    "event": _decode_event,
    "result": _decode_result,
}
