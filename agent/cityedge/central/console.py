"""How a verdict reads on the command post's console: one line per reading, event,
result or state, and a line saying why a message was refused."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from cityedge.central.verifier import Outcome, Verdict
from cityedge.protocol.entries import Entry, Message
from cityedge.sdk.model import Command, Event, Quality, Reading


def when(ts: float) -> str:
    try:
        moment = datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        return f"{ts!r}"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _compact(data: Any) -> str:
    return json.dumps(jsonable(data), separators=(",", ":"), ensure_ascii=False)


def lines(verdict: Verdict) -> list[str]:
    """Readable lines for a verdict (what `cityedge central watch` prints)."""
    if verdict.outcome is Outcome.REJECTED:
        return [f"REJECTED {verdict.topic}: {verdict.reason} — {verdict.detail}"]
    if verdict.outcome is Outcome.SKIPPED:
        return [f"SKIPPED {verdict.topic}: {verdict.detail}"]
    if verdict.command is not None:
        return [_command_line(verdict.command, verdict.topic)]
    message = verdict.message
    if message is None:  # pragma: no cover - every other verdict carries a message
        return []
    where = f"{message.site}/{message.gateway}"
    rotated = [
        f"KEY {where}: now trusting {new} (announced by {old})" for old, new in verdict.rotated
    ]
    return rotated + _message_lines(verdict, message, where)


def _message_lines(verdict: Verdict, message: Message, where: str) -> list[str]:
    if verdict.outcome is Outcome.DUPLICATE:
        return [f"DUPLICATE {where} {message.kind} #{message.seq}: {verdict.detail}"]
    if message.kind == "state":
        state = dict(message.state)
        status = state.pop("status", "?")
        extra = f" {_compact(state)}" if state else ""
        return [f"{when(message.ts)} {where} state {status}{extra}"]
    tags = "".join(
        tag for tag, on in ((" (historical)", message.historical), (" (late)", verdict.late)) if on
    )
    head = f"{where} #{message.seq}{tags}"
    out = [f"{when(_entry_ts(entry))} {head} {_entry_text(entry)}" for entry in message.entries]
    if not out:
        out.append(f"{when(message.ts)} {head} {message.kind}: no entries")
    if verdict.gap is not None:
        first, last = verdict.gap
        out.append(f"GAP {where}: missing #{first}..#{last} ({last - first + 1}) so far")
    return out


def _entry_ts(entry: Entry) -> float:
    return entry["ts"] if isinstance(entry, dict) else entry.ts


def _entry_text(entry: Entry) -> str:
    if isinstance(entry, Reading):
        unit = f" {entry.unit}" if entry.unit else ""
        quality = "" if entry.quality is Quality.GOOD else f" [{entry.quality}]"
        value: object = json.dumps(entry.value) if isinstance(entry.value, str) else entry.value
        if isinstance(entry.value, bool):  # as every `cityedge` command shows a flag
            value = "on" if entry.value else "off"
        return f"{entry.device}.{entry.point} = {value}{unit}{quality}"
    if isinstance(entry, Event):
        state = {True: " raised", False: " cleared", None: ""}[entry.active]
        data = f" {_compact(entry.data)}" if entry.data else ""
        return f"event {entry.kind} from {entry.source} {entry.severity}{state}{data}"
    detail = f" — {entry['detail']}" if entry["detail"] else ""
    readback = ""
    if entry["readback"] is not None:
        matched = {True: " (matches)", False: " (DIFFERS)", None: ""}[entry["readback_matched"]]
        readback = f" readback={entry['readback']!r}{matched}"
    data = f" {_compact(entry['data'])}" if entry["data"] else ""
    name = entry["command_id"] or "(unverified)"
    return f"result {name} [{entry['digest'].hex()}]: {entry['code']}{detail}{readback}{data}"


def _command_line(command: Command, topic: str) -> str:
    device = f" {command.device}" if command.device else ""
    args = f" {_compact(command.args)}" if command.args else ""
    return (
        f"{when(command.issued)} command {command.id} to {command.target}: {command.op}{device}"
        f"{args} (key {command.key_id}, expires {when(command.expires)}) on {topic}"
    )


# --- JSON lines -------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """JSON has no bytes and no NaN: bytes become hex, non-finite floats text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def records(verdict: Verdict) -> list[dict[str, Any]]:
    """One JSON object per reading / event / result / state (or per refused message)."""
    base: dict[str, Any] = {"outcome": str(verdict.outcome), "topic": verdict.topic}
    if verdict.outcome in (Outcome.REJECTED, Outcome.SKIPPED):
        return [{**base, "reason": verdict.reason, "detail": verdict.detail}]
    if verdict.command is not None:
        c = verdict.command
        return [{**base, "kind": "command", "id": c.id, "target": c.target, "device": c.device,
                 "op": c.op, "args": jsonable(c.args), "issued": c.issued,
                 "expires": c.expires, "key_id": c.key_id}]  # fmt: skip
    message = verdict.message
    if message is None:  # pragma: no cover
        return [base]
    base |= _message_fields(message)
    if verdict.outcome is Outcome.DUPLICATE:
        return [{**base, "reason": verdict.reason, "detail": verdict.detail}]
    if verdict.gap is not None:
        base["gap"] = list(verdict.gap)
    if verdict.late:
        base["late"] = True
    if verdict.rotated:
        base["rotated"] = [list(pair) for pair in verdict.rotated]
    if message.kind == "state":
        return [{**base, "state": jsonable(message.state)}]
    return [{**base, "entry": _entry_record(entry)} for entry in message.entries] or [base]


def _message_fields(message: Message) -> dict[str, Any]:
    return {
        "site": message.site, "gateway": message.gateway, "kind": message.kind,
        "seq": message.seq, "ts": message.ts, "historical": message.historical,
        "key_id": message.key_id,
    }  # fmt: skip


def _entry_record(entry: Entry) -> dict[str, Any]:
    if isinstance(entry, Reading):
        fields: dict[str, Any] = {
            "device": entry.device, "point": entry.point, "value": entry.value,
            "ts": entry.ts, "unit": entry.unit, "quality": str(entry.quality),
        }  # fmt: skip
    elif isinstance(entry, Event):
        fields = {
            "event": entry.kind, "source": entry.source, "ts": entry.ts,
            "severity": str(entry.severity), "active": entry.active, "data": entry.data,
        }  # fmt: skip
    else:
        fields = {**entry, "code": str(entry["code"])}
    return {key: jsonable(value) for key, value in fields.items()}


def json_lines(verdict: Verdict) -> list[str]:
    return [json.dumps(r, ensure_ascii=False) for r in records(verdict)]
