"""Rows as both stores write them: one tuple per reading, event and result.

Times stay epoch seconds here; each store converts them to its own column type.
A value is kept as a number when it is one (booleans as 0/1, with the text
"true"/"false" beside it so the type survives), else as text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from cityedge.central.ingest.decode import Decoded
from cityedge.sdk.model import Value

READING_COLUMNS = (
    "ts", "site", "gateway", "seq", "device", "point", "num", "txt", "unit", "quality",
)  # fmt: skip
EVENT_COLUMNS = (
    "ts", "site", "gateway", "seq", "kind", "source", "severity", "active", "data",
)  # fmt: skip
RESULT_COLUMNS = (
    "ts", "site", "gateway", "seq", "command_id", "code", "detail", "readback",
    "readback_matched", "data",
)  # fmt: skip

Row = tuple[Any, ...]
_INF = float("inf")


def split_value(value: Value) -> tuple[float | None, str | None]:
    if isinstance(value, bool):
        return (1.0 if value else 0.0), ("true" if value else "false")
    if isinstance(value, int | float):
        number = float(value)
        return (number, None) if abs(number) != float("inf") else (None, str(value))
    return None, str(value)


def to_json(data: Any) -> str:
    """JSON text of decoded MessagePack data (bytes become hex: JSON has no bytes)."""
    return json.dumps(data, ensure_ascii=False, default=_plain, separators=(",", ":"))


def _plain(obj: Any) -> Any:
    if isinstance(obj, bytes | bytearray):
        return bytes(obj).hex()
    return str(obj)


def reading_rows(messages: Iterable[Decoded]) -> list[Row]:
    rows: list[Row] = []
    append_row = rows.append
    for m in messages:
        site, gateway, seq = m.site, m.gateway, m.seq
        for r in m.readings:
            value = r.value
            num: float | None
            txt: str | None
            if type(value) is float and abs(value) != _INF:  # the common case, cheaply
                num, txt = value, None
            else:
                num, txt = split_value(value)
            append_row((r.ts, site, gateway, seq, r.device, r.point, num, txt, r.unit,
                        r.quality.value))  # fmt: skip
    return rows


def event_rows(messages: Iterable[Decoded]) -> list[Row]:
    return [
        (e.ts, m.site, m.gateway, m.seq, e.kind, e.source, str(e.severity), e.active,
         to_json(e.data))
        for m in messages
        for e in m.events
    ]  # fmt: skip


def result_rows(messages: Iterable[Decoded]) -> list[Row]:
    return [
        (r["ts"], m.site, m.gateway, m.seq, r["command_id"], str(r["code"]), r["detail"],
         None if r["readback"] is None else to_json(r["readback"]), r["readback_matched"],
         to_json(r["data"]))
        for m in messages
        for r in m.results
    ]  # fmt: skip
