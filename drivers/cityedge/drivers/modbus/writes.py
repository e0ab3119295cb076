"""What is known of a write whose answer did not come back.

A Modbus write that timed out (or whose reply was garbled, or whose connection
dropped) may have been applied: the request reached the device, the answer was
lost or late. Sending it again would make the device act twice — a pulse, a
counter reset, a command register — while the caller is told `unreachable`.
So a write is sent once; when its answer is missing, the point is read back
(reads are safe to repeat) and the outcome is what the device then holds:

* the value written: applied — the write succeeds, a warning is logged;
* another value: not applied when read back — `WriteUnconfirmed` says so;
* no answer to the read-back either: unknown — `WriteUnconfirmed` says so.

Either way the command's result is `unreachable` with that detail
(docs/modbus.md, "Writes").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import structlog

from cityedge.drivers.modbus.codec import DecodeError, decode
from cityedge.drivers.modbus.errors import WriteUnconfirmed
from cityedge.drivers.modbus.points import Point
from cityedge.sdk.model import DeviceError

log = structlog.get_logger(__name__)


async def settle_unconfirmed(
    device: str,
    point: Point,
    words: Sequence[int],
    unconfirmed: WriteUnconfirmed,
    read_back: Callable[[], Awaitable[Sequence[int]]],
) -> None:
    """Return when the read-back shows `words` applied; else raise `WriteUnconfirmed`
    naming what is known. Never writes."""
    where = f"{device}.{point.name}"
    try:
        held = await read_back()
        now, wanted = decode(point, held), decode(point, words)
    except (DeviceError, DecodeError) as exc:
        raise WriteUnconfirmed(
            f"{where}: {unconfirmed}; the read-back failed too ({exc}): whether the write "
            "was applied is unknown; it was not sent again"
        ) from None
    if now != wanted:
        raise WriteUnconfirmed(
            f"{where}: {unconfirmed}; read back {now!r}, not {wanted!r}: not applied when "
            "read back; it was not sent again"
        )
    log.warning("modbus.write_confirmed_by_read_back", device=device, point=point.name,
                value=now, error=str(unconfirmed))  # fmt: skip
