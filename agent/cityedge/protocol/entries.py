"""Entries and the messages that carry them: one reading, event or command result.

An entry is encoded once, when it enters the outbox (`reading_entry`,
`event_entry`, `result_entry`), and decoded strictly when a message is opened
(`decode_entries`); `Message` is a verified gateway message as the command post
sees it. Layouts in docs/protocol.md §5-6. Event and result entries travel as
stored; a reading entry is the outbox's own form, which the sealer regroups
into a readings block (protocol/readings.py), the only form readings travel in.

What an encoder writes, `open_message` accepts: one bad entry would otherwise
poison a whole message of 500. Text from the outside world (device names,
values, event data) is coerced into what MessagePack carries (text for odd
types, integers beyond 64 bits, lone surrogates); values only code can get
wrong (a severity that is not a Severity, a NaN timestamp) raise ValueError.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, TypedDict, cast

import msgpack

from cityedge.protocol.decoding import (
    MAX_COMMAND_ID,
    MAX_DETAIL,
    MAX_NESTING,
    VALUE_TYPES,
    malformed,
    read_array,
    read_choice,
    read_optional_bool,
    read_optional_value,
    read_plain_map,
    read_text,
    read_time,
    show,
)
from cityedge.protocol.readings import MAX_TS, decode_block
from cityedge.sdk.model import CommandResult, Event, Quality, Reading, ResultCode, Severity, Value

ENTRY_KINDS: Final = ("telemetry", "event", "result")  # body.data is an array of entries
OBJECT_KINDS: Final = ("state",)  # body.data is a map
MESSAGE_KINDS: Final = ENTRY_KINDS + OBJECT_KINDS
DIGEST_BYTES: Final = 16  # a result's command digest: SHA-256 of the command payload, cut


class ResultEntry(TypedDict):
    """A command result as carried in a `result` message."""

    command_id: str
    digest: bytes  # of the command payload answered (docs/protocol.md §8.3)
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
        command_digest=entry["digest"],
    )


# --- encoding: once, when an entry enters the outbox -----------------------------------


_GOOD: Final = Quality.GOOD  # a module global: an enum member's lookup costs more


def reading_entry(r: Reading) -> bytes:
    """The outbox's form of a reading (never sent as such: `sealing` regroups a
    message's readings into a block): `[device, point, value, ts, unit, quality]`,
    trailing defaults (unit nil, quality "good") left out."""
    return packed_reading(r)[0]


def packed_reading(r: Reading) -> tuple[bytes, tuple[Any, ...] | None]:
    """`reading_entry`'s bytes and the fields they pack, exactly as decoding them
    would give (None when a field had to be coerced to pack: then only the bytes say
    what travels). The outbox hands the fields to the sealer, which skips decoding."""
    # The pipeline calls this for every reading: plain types take the short way, and
    # a tuple packs as an array for less than a list costs to build.
    device, point, value, ts, unit, quality = r.device, r.point, r.value, r.ts, r.unit, r.quality
    if type(value) not in VALUE_TYPES:
        value = _point_value(value)
    if type(ts) is not float:
        ts = float(ts)
    if not -MAX_TS <= ts <= MAX_TS:  # NaN fails too; readings travel to the millisecond
        raise ValueError(f"reading ts {r.ts!r}: expected a finite number of seconds (±9e12)")
    if type(device) is not str:
        device = str(device)
    if type(point) is not str:
        point = str(point)
    if unit is not None and type(unit) is not str:
        unit = str(unit)
    fields: tuple[Any, ...]
    if quality is not _GOOD and Quality(quality) is not _GOOD:
        fields = (device, point, value, ts, unit, Quality(quality).value)
    elif unit is None:
        fields = (device, point, value, ts)
    else:
        fields = (device, point, value, ts, unit)
    try:
        return _pack(fields), fields
    except (ValueError, TypeError, OverflowError):
        return pack_total(fields), None


def event_entry(e: Event) -> bytes:
    """`[kind, source, ts, severity, active, data]`; trailing defaults (severity
    "info", active nil, data {}) are left out."""
    if e.active is not None and type(e.active) is not bool:
        raise ValueError(f"event {e.kind}: active must be True, False or None")
    fields: list[Any] = [
        str(e.kind), str(e.source), finite(e.ts, "event ts"), Severity(e.severity).value,
        e.active, carryable(e.data, 0),
    ]  # fmt: skip
    return pack_total(_trim(fields, (Severity.INFO.value, None, {})))


def result_entry(r: CommandResult, ts: float) -> bytes:
    """`[command_id, digest, code, ts, detail, readback, readback_matched, data]`;
    trailing defaults ("", nil, nil, {}) are left out. Id and detail are cut to their
    limits. The digest names the exact command payload answered."""
    if type(r.command_digest) is not bytes or len(r.command_digest) != DIGEST_BYTES:
        raise ValueError(f"result {r.command_id}: command_digest must be {DIGEST_BYTES} bytes")
    readback = r.readback
    if readback is not None and type(readback) not in VALUE_TYPES:
        readback = _point_value(readback)
    if r.readback_matched is not None and type(r.readback_matched) is not bool:
        raise ValueError(f"result {r.command_id}: readback_matched must be a bool or None")
    fields: list[Any] = [
        str(r.command_id)[:MAX_COMMAND_ID], r.command_digest, ResultCode(r.code).value,
        finite(ts, "result ts"),
        str(r.detail)[:MAX_DETAIL], readback, r.readback_matched, carryable(r.data, 0),
    ]  # fmt: skip
    return pack_total(_trim(fields, ("", None, None, {})))


def finite(ts: float, what: str) -> float:
    """`ts` as a float; ValueError names `what` if it is not a finite number."""
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


# One packer for every entry: packb() would build one per call, a third of an entry's
# cost. Packing runs in C under the GIL and resets the buffer on errors.
_pack: Callable[[Any], bytes] = msgpack.Packer(autoreset=True).pack


def pack_total(obj: Any) -> bytes:
    """Pack; on what MessagePack refuses (an int beyond 64 bits, a lone surrogate),
    pack a coerced copy instead: an entry is never lost to encoding."""
    try:
        return _pack(obj)
    except (ValueError, TypeError, OverflowError):
        return cast(bytes, msgpack.packb(carryable(obj, 0)))


def _point_value(value: Any) -> Value:
    """A point value of a subclass (numpy float, IntEnum…) as its plain type, else as text."""
    plain = carryable(value, 0)
    return plain if type(plain) in VALUE_TYPES else str(value)


def carryable(obj: Any, depth: int) -> Any:
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
        return [carryable(v, depth + 1) for v in obj]
    if isinstance(obj, Mapping):
        return {str(carryable(k, depth + 1)): carryable(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, set | frozenset):
        return sorted(str(carryable(v, depth + 1)) for v in obj)
    return carryable(str(obj), depth + 1)


# --- decoding: strictly, once the signature checked out --------------------------------


def decode_entries(kind: str, raw: Any) -> list[Entry]:
    """The entries of a message of `kind` (one of ENTRY_KINDS); EnvelopeError names the
    index of a malformed one."""
    if kind == "telemetry":
        return list(decode_block(raw, "body.data"))
    if not isinstance(raw, list):
        raise malformed(f"body.data: expected an array of entries, got {show(raw)}")
    decode = _ENTRY_DECODERS[kind]
    return [decode(entry, f"body.data[{i}]") for i, entry in enumerate(raw)]


def _decode_event(entry: Any, where: str) -> Event:
    f = read_array(entry, where, 3, 6)
    return Event(
        kind=read_text(f[0], f"{where}.kind"),
        source=read_text(f[1], f"{where}.source"),
        ts=read_time(f[2], f"{where}.ts"),
        severity=read_choice(Severity, f[3], f"{where}.severity") if len(f) > 3 else Severity.INFO,
        active=read_optional_bool(f[4], f"{where}.active") if len(f) > 4 else None,
        data=read_plain_map(f[5], f"{where}.data") if len(f) > 5 else {},
    )


def _decode_result(entry: Any, where: str) -> ResultEntry:
    f = read_array(entry, where, 4, 8)
    digest = f[1]
    if type(digest) is not bytes or len(digest) != DIGEST_BYTES:
        raise malformed(f"{where}.digest: expected {DIGEST_BYTES} bytes of bin, got {show(digest)}")
    return ResultEntry(
        command_id=read_text(f[0], f"{where}.command_id", limit=MAX_COMMAND_ID),
        digest=digest,
        code=read_choice(ResultCode, f[2], f"{where}.code"),
        ts=read_time(f[3], f"{where}.ts"),
        detail=read_text(f[4], f"{where}.detail", limit=MAX_DETAIL) if len(f) > 4 else "",
        readback=read_optional_value(f[5], f"{where}.readback") if len(f) > 5 else None,
        readback_matched=(
            read_optional_bool(f[6], f"{where}.readback_matched") if len(f) > 6 else None
        ),
        data=read_plain_map(f[7], f"{where}.data") if len(f) > 7 else {},
    )


_ENTRY_DECODERS: dict[str, Callable[[Any, str], Entry]] = {
    "event": _decode_event,
    "result": _decode_result,
}
