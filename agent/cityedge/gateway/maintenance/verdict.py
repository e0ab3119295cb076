"""What a crew at the cabinet needs to read first: one verdict line, problem devices
first, and each device's trouble in words (not `connection 8`).

Pure functions of the status read-model, shared by the page; the words for each
error reason a driver counts live here, next to what to check for it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cityedge.gateway.control.status import DeviceStatus

# reason counted in a device's health -> (what happens, what to check)
REASONS: Mapping[str, tuple[str, str]] = {
    "connection": ("cannot connect", "check cable/power and its address"),
    "timeout": ("no reply in time", "check cable/power"),
    "crc": ("garbled replies (checksum)", "check wiring, termination, baud rate"),
    "truncated": ("replies cut short", "check wiring and termination"),
    "decode": ("replies it cannot read", "check the profile or codec"),
    "stray": ("noise on the line", "check wiring and shielding"),
    "stray_bytes": ("noise on the line", "check wiring and shielding"),
    "silent": ("silent for too long", "check its battery and radio"),
    "refused": ("refuses requests", "check the profile and unit id"),
    "port": ("its serial port fails", "check the USB/serial adapter"),
    "gatt_rejected": ("refuses the Bluetooth read", "check pairing and range"),
    "internal": ("an agent error", "see `journalctl -u cityedge`"),
    "queue_full": ("more data than the agent can take", "see `cityedge status`"),
    "unknown_object": ("sends objects it does not know", "check its profile"),
}
ORDER = {"down": 0, "degraded": 1, "unknown": 2, "up": 3}


def reason_words(reason: str) -> tuple[str, str]:
    """`connection` -> ("cannot connect", "check cable/power…"); Modbus exception codes too."""
    if reason.startswith("exception-"):
        return (f"refuses requests (Modbus exception {reason.split('-', 1)[1]})",
                "check the profile and unit id")  # fmt: skip
    return REASONS.get(reason, (reason.replace("_", " "), "see `cityedge check`"))


def problem_first(devices: Sequence[DeviceStatus]) -> list[DeviceStatus]:
    return sorted(devices, key=lambda d: (ORDER.get(d.state, 2), d.device))


def clock(ts: float) -> str:
    return time.strftime("%H:%M", time.localtime(ts))


@dataclass(frozen=True)
class Trouble:
    device: str
    state: str
    what: str  # "no answer since 14:02" / "never answered"
    why: str  # "cannot connect ×8 — check cable/power and its address"


def trouble(d: DeviceStatus) -> Trouble | None:
    """Why a device that is not up is not, in words; None for one that is up."""
    if d.state == "up":
        return None
    if d.state == "degraded":
        what = "answers, with errors"
    elif d.last_seen is None:
        what = "never answered"
    else:
        what = f"no answer since {clock(d.last_seen)}"
    if d.errors:
        reason, count = max(d.errors.items(), key=lambda item: item[1])
        words, remedy = reason_words(reason)
        why = f"{words} (×{count}) — {remedy}"
    elif d.state == "unknown":
        why = "not polled yet"
    else:
        why = d.detail or "check cable/power"
    return Trouble(d.device, d.state, what, why)


def verdict(devices: Sequence[DeviceStatus]) -> tuple[str, str]:
    """The first line of the page and its class (`ok`, `warn`, `fail`)."""
    real = [d for d in devices if d.type]  # not the radio links
    if not real:
        return "No devices configured.", "warn"
    down = [t for d in problem_first(real) if d.state == "down" and (t := trouble(d))]
    degraded = [d for d in real if d.state == "degraded"]
    if down:
        said = "; ".join(f"{t.device} {t.what} — {t.why.split(' — ')[-1]}" for t in down)
        return f"{len(down)} of {len(real)} devices down: {said}", "fail"
    if degraded:
        names = ", ".join(d.device for d in degraded)
        return f"{len(degraded)} of {len(real)} devices answer with errors: {names}", "warn"
    waiting = sum(1 for d in real if d.state == "unknown")
    if waiting:
        return f"{len(real) - waiting} of {len(real)} devices up, {waiting} not polled yet", "warn"
    return f"All {len(real)} devices up.", "ok"
