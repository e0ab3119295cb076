"""The demo as a show: a live view of the street instead of a log.

One table of the devices (their state and last values, the lampposts' levels as
the lighting program sets them), a line of counts (messages verified, late,
rejected), the last command and the last events — fed by the command post's own
verifier, so what it shows is what a command post would trust. A hole in the
sequence is shown only once it has stayed open for `gap_grace` seconds: a message
that comes a little late (it was in flight while a newer one overtook it) fills it
first, and is not an alarm.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cityedge.central.verifier import Outcome, Verdict
from cityedge.sdk.model import Event, Quality, Reading

if TYPE_CHECKING:
    from rich.console import RenderableType

    from cityedge.central.verifier import Gap

LAMP_POINTS = ("lamp_on", "dimming", "power")  # what a lamppost row shows first
MAX_VALUES = 4
GAP_GRACE = 10.0


@dataclass
class DeviceRow:
    name: str
    values: dict[str, str] = field(default_factory=dict)
    seen: float | None = None
    down: bool = False


@dataclass
class StreetView:
    gap_grace: float = GAP_GRACE
    devices: dict[str, DeviceRow] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    late: int = 0
    gateway: str = "?"
    state: str = "?"
    clock_unsynced: bool = False
    events: deque[str] = field(default_factory=lambda: deque(maxlen=4))
    command: str = ""
    _holes: dict[tuple[str, int, int], float] = field(default_factory=dict)

    def feed(self, verdict: Verdict, now: float | None = None) -> None:
        """Take one verdict of the command post's verifier into the view."""
        now = time.time() if now is None else now
        self.counts[verdict.outcome] = self.counts.get(verdict.outcome, 0) + 1
        self.late += bool(verdict.late)
        message = verdict.message
        if message is None or verdict.outcome is not Outcome.ACCEPTED:
            return
        self.gateway = f"{message.site}/{message.gateway}"
        if message.kind == "state":
            self.state = str(dict(message.state).get("status", "?"))
        for entry in message.entries:
            if isinstance(entry, Reading):
                self._reading(entry, now)
            elif isinstance(entry, Event):
                self._event(entry)
            else:
                code = entry["code"]
                self.command = f"result {entry['command_id']}: {code}" + (
                    f" — {entry['detail']}" if entry["detail"] else ""
                )

    def _reading(self, reading: Reading, now: float) -> None:
        row = self.devices.setdefault(reading.device, DeviceRow(reading.device))
        unit = f" {reading.unit}" if reading.unit else ""
        value = reading.value
        shown = ("on" if value else "off") if isinstance(value, bool) else f"{value}"
        row.values[reading.point] = shown + unit
        row.seen = now
        if reading.quality is Quality.CLOCK_UNSYNCED:
            self.clock_unsynced = True  # said once, in the header, not on every value

    def _event(self, event: Event) -> None:
        if event.kind == "device.unreachable":
            row = self.devices.setdefault(event.source, DeviceRow(event.source))
            row.down = bool(event.active)
        state = {True: " raised", False: " cleared", None: ""}[event.active]
        self.events.append(f"{time.strftime('%H:%M:%S')} {event.kind} {event.source}{state}")

    def real_gaps(self, open_now: list[Gap], now: float | None = None) -> list[Gap]:
        """The holes open for longer than the grace period (the others may still fill)."""
        now = time.time() if now is None else now
        keys = {(g.gateway, g.first, g.last): g for g in open_now}
        self._holes = {k: self._holes.get(k, now) for k in keys}
        return [g for k, g in keys.items() if now - self._holes[k] >= self.gap_grace]

    def render(self, gaps: list[Gap], now: float | None = None) -> RenderableType:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        now = time.time() if now is None else now
        header = Text(f"street {self.gateway} — gateway {self.state}", style="bold")
        if self.clock_unsynced:
            header.append("  [gateway clock not synchronised: readings flagged]", style="yellow")
        table = Table(expand=False)
        for column in ("Device", "State", "Last values", "Seen"):
            table.add_column(column, overflow="fold")
        for name in sorted(self.devices):
            row = self.devices[name]
            fresh = row.seen is not None and now - row.seen < 60
            state, style = ("down", "red") if row.down else (
                ("up", "green") if fresh else ("quiet", "yellow"))  # fmt: skip
            table.add_row(name, f"[{style}]{state}[/]", _values(row.values),
                          "-" if row.seen is None else f"{now - row.seen:.0f} s ago")  # fmt: skip
        verified = self.counts.get(Outcome.ACCEPTED, 0)
        counts = Text(f"{verified} messages verified")
        for label, n in (("late", self.late), ("duplicate", self.counts.get(Outcome.DUPLICATE, 0)),
                         ("REJECTED", self.counts.get(Outcome.REJECTED, 0))):  # fmt: skip
            if n:
                counts.append(f" · {n} {label}", style="red" if label == "REJECTED" else "")
        parts: list[Any] = [header, table, counts]
        for gap in gaps:
            parts.append(Text(f"GAP {gap.gateway}: missing #{gap.first}..#{gap.last} "
                              f"for over {self.gap_grace:.0f} s", style="red"))  # fmt: skip
        if self.command:
            parts.append(Text(f"last command: {self.command}"))
        parts += [Text(line, style="dim") for line in self.events]
        return Group(*parts)


def _values(values: dict[str, str]) -> str:
    first = [p for p in LAMP_POINTS if p in values]
    rest = [p for p in sorted(values) if p not in first]
    chosen = (first + rest)[:MAX_VALUES]
    more = len(values) - len(chosen)
    return "  ".join(f"{p} {values[p]}" for p in chosen) + (f"  (+{more})" if more else "")
