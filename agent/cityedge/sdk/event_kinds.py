"""Every kind of event the agent sends to the command post: the one registry.

docs/protocol.md §6.5 is the catalogue a command-post team reads; a test holds
the two equal (kinds and data keys), and another holds every kind the code
passes to `Event(...)` to this list, so neither can drift. A kind written
`<...>` is a family whose names come from data (device profiles, codecs, result
codes); a data key ending in `?` is sent only when it applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class EventKind:
    kind: str
    source: str  # what the event's `source` field names
    severity: str  # info, warning or alarm
    active: bool  # raised (true) and cleared (false); else a one-off (nil)
    data: tuple[str, ...]  # the keys of `data`


_SECURITY = ("code", "reason", "count", "unanswered", "window_s", "last_detail", "key_id")
_OVERRIDE = ("point", "value", "previous?", "restored?", "until?", "seconds?", "started?",
             "ended?", "by?", "failures?", "uid", "user", "pid?", "claimed_user?")  # fmt: skip

EVENT_KINDS: Final[tuple[EventKind, ...]] = (
    # the agent itself
    EventKind("command.audit", "commands", "info", False,
              ("command", "digest", "code", "detail", "op", "device", "key_id")),
    EventKind("security.<code>", "commands", "warning", False, _SECURITY),
    EventKind("commands.busy", "commands", "warning", False, _SECURITY),
    EventKind("clock.unsynchronised", "clock", "warning", True, ("source",)),
    EventKind("clock.stepped", "clock", "warning", False, ("offset", "until")),
    EventKind("outbox.evicted", "outbox", "warning", False,
              ("reason", "counts", "first_ts", "last_ts", "bytes", "first_seq?", "last_seq?")),
    EventKind("outbox.corrupt", "outbox", "alarm", False,
              ("reason", "set_aside?", "held_last_seq?", "counts", "first_seq?", "last_seq?")),
    EventKind("outbox.disk_full", "outbox", "alarm", True, ("active",)),
    EventKind("local.override", "<device>", "warning", True, _OVERRIDE),
    EventKind("local.write_denied", "<device>", "warning", False,
              ("point", "value", "reason", "uid", "user", "pid", "claimed_user?")),
    EventKind("lighting.lamp_failure", "<device>", "alarm", True, ("commanded", "power_w")),
    EventKind("lighting.day_burner", "<device>", "alarm", True, ("commanded", "power_w")),
    EventKind("lighting.driver_fault", "<device>", "alarm", True, ("commanded", "power_w")),
    EventKind("lighting.not_following", "<device>", "alarm", True, ("commanded", "power_w")),
    EventKind("lighting.manual_superseded", "<device>", "info", False,
              ("point", "held", "level", "program")),
    EventKind("lighting.energy_report", "<group>", "info", False,
              ("group", "night_hours", "lampposts", "kwh", "baseline_kwh", "saving_percent")),
    # drivers
    EventKind("device.unreachable", "<device>", "warning", True,
              ("driver", "reason?", "detail?")),
    EventKind("device.bad_answer", "<device>", "warning", True,
              ("driver", "reason?", "detail?", "reasons?")),
    EventKind("<profile alarm>", "<device>", "alarm", True, ("point",)),
    EventKind("<codec alarm>", "<device>", "<codec>", True, ("point", "value")),
    EventKind("gps.fix_lost", "<device>", "warning", True, ("driver", "fix", "satellites?")),
    EventKind("lorawan.joined", "<device>", "info", False, ("dev_addr", "via", "accept_sent")),
    EventKind("lorawan.silent", "<device>", "warning", True, ("silent_for?", "interval?")),
    EventKind("lorawan.counters_corrupt", "<driver>", "warning", False, ("set_aside",)),
    EventKind("ble.sensor_silent", "<device>", "alarm", True,
              ("silent_s?", "expected_interval_s?")),
    EventKind("ble.adapter_down", "<driver>", "alarm", True, ("adapter", "detail")),
    EventKind("ble.button", "<device>", "info", False, ("point", "action")),
    EventKind("ble.dimmer", "<device>", "info", False, ("point", "action", "steps?")),
)  # fmt: skip

KINDS: Final = frozenset(k.kind for k in EVENT_KINDS)
