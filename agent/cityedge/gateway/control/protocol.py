"""The control socket's wire format: one JSON object per line, each way.

Request:  {"op": "status"}                      (plus the op's own arguments)
Answer:   {"ok": true, "data": …}  or  {"ok": false, "error": "one clear line"}

Operations (docs/operations.md has the full table):

    ping                                   → version, uptime
    status                                 → uplink, outbox, drivers, devices, clock, overrides
    devices                                → health and type of every device
    read       device, points?             → a live read through the driver
    write      device, point, value, for   → a local, time-limited override
    overrides                              → overrides in force
    outbox                                 → outbox statistics
    forwarders                             → health of LoRaWAN packet forwarders
    check.record  results                  → keep a `cityedge check` run (maintenance page)
    check.last                             → the last recorded check

A request line is at most `MAX_REQUEST_BYTES`; longer ones are refused.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_REQUEST_BYTES = 64 * 1024
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
OP_NAME_MAX = 32


class ControlError(Exception):
    """A request the agent refused or could not carry out; the message is for a person."""


class AgentUnreachable(ControlError):
    """No agent answers on the socket (not running, wrong path, no permission)."""


def encode(message: dict[str, Any]) -> bytes:
    """One line of compact JSON. Non-finite floats become null: JSON has no NaN."""
    return json.dumps(_finite(message), separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def answer_ok(data: Any) -> bytes:
    return encode({"ok": True, "data": data})


def answer_error(message: str) -> bytes:
    return encode({"ok": False, "error": message})


def parse_request(line: bytes) -> tuple[str, dict[str, Any]]:
    """`(op, arguments)` from one request line; ControlError says what is wrong."""
    if len(line) > MAX_REQUEST_BYTES:
        raise ControlError(f"request too large: {len(line)} bytes (max {MAX_REQUEST_BYTES})")
    try:
        message = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise ControlError("request is not UTF-8 text") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ControlError(f"request is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ControlError(f"request must be a JSON object, got {type(message).__name__}")
    op = message.pop("op", None)
    if not isinstance(op, str) or not 0 < len(op) <= OP_NAME_MAX:
        raise ControlError('request needs "op": the name of an operation')
    return op, message


def parse_answer(line: bytes) -> Any:
    """The data of an answer line; ControlError carries the agent's refusal."""
    try:
        message = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ControlError(f"unreadable answer from the agent: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("ok"), bool):
        raise ControlError("unreadable answer from the agent: no 'ok' field")
    if not message["ok"]:
        error = message.get("error")
        raise ControlError(error if isinstance(error, str) else "the agent refused the request")
    return message.get("data")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
