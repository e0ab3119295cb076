"""TALQ calendars and control programs → the agent's lighting document.

The lighting controller runs programs offline, stored durably and applied
atomically (`LightingController.push`); TALQ is one more way to write its
document. A `ControlProgramOne` becomes a program of steps:

- `astroClockTimeControls` (sunset/sunrise ± minutes) → `sunset+N` / `sunrise-N`
- `fixedTimeControls` (`HH:MM[:SS]`) → `HH:MM`
- an `AstroClockActivePeriod` or `AbsoluteActivePeriod` → the night's start and its
  `off`; from the start to the first switch point the lamps are at 100 %.

A calendar becomes a lighting group per calendar with the lamps assigned to it
(by their `calendarID`): its `defaultProgram` is the group's program; rules with a
`ccDay` condition become weekday exceptions, rules for one date date exceptions.
Lamps no calendar claims keep the groups and programs of the configured document.
"""

from __future__ import annotations

import re
from typing import Any

from cityedge.gateway.talq.errors import TalqError, unprocessable

TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::[0-5]\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)?$")
DATE = re.compile(r"^(\d{4})-(\d\d)-(\d\d)$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # TALQ day 1 = Monday
PREFIX = "talq-"


def level_of(command: Any) -> int:
    """The level (0-100) a TALQ `CommandBase` asks for."""
    state = command.get("state") if isinstance(command, dict) else None
    if not isinstance(state, dict):
        raise unprocessable("payloadError", "a command needs a state")
    value = state.get("value")
    if state.get("name") == "BooleanState" and isinstance(value, bool):
        return 100 if value else 0
    if state.get("name") == "LevelState" and isinstance(value, int) and 0 <= value <= 100:
        return value
    raise unprocessable(
        "overrideCommandNotValid",
        f"unsupported state {state.get('name')!r}: use LevelState or BooleanState",
    )


def _astro(event: str, offset: int) -> str:
    if offset == 0:
        return event
    return f"{event}{'+' if offset > 0 else '-'}{min(abs(offset), 999)}"


def _clock(text: Any) -> str:
    match = TIME.match(text) if isinstance(text, str) else None
    if match is None:
        raise unprocessable("payloadError", f"expected a time HH:MM[:SS], got {text!r}")
    return f"{match.group(1)}:{match.group(2)}"


def _order(at: str) -> tuple[int, int]:
    """Where a step falls in a night: after sunset, clock times from noon, then the
    morning, then sunrise."""
    if at.startswith("sunset"):
        return (0, 0)
    if at.startswith("sunrise"):
        return (3, 0)
    hour, minute = int(at[:2]), int(at[3:5])
    return (1, hour * 60 + minute) if hour >= 12 else (2, hour * 60 + minute)


Broken = (KeyError, TypeError, ValueError, AttributeError, IndexError)


def program(doc: dict[str, Any]) -> dict[str, Any]:
    """One `ControlProgramOne` as a lighting program table; TalqError (422) names what
    this gateway cannot run, whatever the document holds."""
    try:
        return _program(doc)
    except Broken as exc:
        raise unprocessable("payloadError", f"control program {_id(doc)}: {_say(exc)}") from None


def _id(doc: Any) -> str:
    return repr(doc.get("id")) if isinstance(doc, dict) else "?"


def _say(exc: Exception) -> str:
    return f"unexpected content ({type(exc).__name__}: {exc})"


def _program(doc: dict[str, Any]) -> dict[str, Any]:
    if doc.get("type") != "ControlProgramOne":
        raise unprocessable(
            "payloadError",
            f"control program {doc.get('id')!r}: only ControlProgramOne is supported",
        )
    steps: list[dict[str, Any]] = []
    for control in doc.get("astroClockTimeControls") or []:
        event = control.get("solarEventType")
        if event not in ("sunset", "sunrise"):
            raise ValueError(f"solarEventType {event!r}")
        steps.append(
            {
                "at": _astro(event, int(control.get("offset", 0)) // 60),
                "level": level_of(control.get("command")),
            }
        )
    for control in doc.get("fixedTimeControls") or []:
        steps.append(
            {"at": _clock(control.get("startTime")), "level": level_of(control.get("command"))}
        )
    off = "sunrise"
    start: str | None = None
    for period in doc.get("activePeriods") or []:
        if period.get("name") == "AstroClockActivePeriod":
            start = _astro("sunset", int(period.get("sunsetOffset", 0)) // 60)
            off = _astro("sunrise", int(period.get("sunriseOffset", 0)) // 60)
        elif period.get("name") == "AbsoluteActivePeriod":
            start, off = _clock(period.get("startTime")), _clock(period.get("endTime"))
    steps.sort(key=lambda s: _order(s["at"]))
    # a step at the end of the night that switches off is the night's end
    while steps and steps[-1]["level"] == 0 and steps[-1]["at"].startswith("sunrise"):
        off = steps.pop()["at"]
    if start is not None and not any(s["at"] == start for s in steps):
        # the active period starts before its first switch point: full light until it
        steps.insert(0, {"at": start, "level": 100})
    if not steps:
        raise unprocessable("payloadError", f"control program {doc.get('id')!r} sets no level")
    return {"steps": steps, "off": off}


def lighting_document(
    base: dict[str, Any],
    calendars: dict[str, dict[str, Any]],
    programs: dict[str, dict[str, Any]],
    assigned: dict[str, str],
) -> dict[str, Any]:
    """`base` (the running document, dumped) with the lamps of `assigned` (device ->
    calendar id) moved into one group per calendar. Raises TalqError naming what
    cannot be run."""
    try:
        return _lighting_document(base, calendars, programs, assigned)
    except Broken as exc:
        raise unprocessable("payloadError", f"calendars: {_say(exc)}") from None


def _lighting_document(
    base: dict[str, Any],
    calendars: dict[str, dict[str, Any]],
    programs: dict[str, dict[str, Any]],
    assigned: dict[str, str],
) -> dict[str, Any]:
    claimed = {d for d, c in assigned.items() if c in calendars}
    doc = dict(base)
    groups = []
    for group in base.get("groups", []):
        if group["name"].startswith(PREFIX):
            continue
        kept = [d for d in group["devices"] if d not in claimed]
        if kept:
            groups.append({**group, "devices": kept})
    kept_groups = {g["name"] for g in groups}
    exceptions = [
        e
        for e in base.get("exceptions", [])
        if not e.get("groups") or set(e["groups"]) & kept_groups
    ]
    progs = {n: p for n, p in base.get("programs", {}).items() if not n.startswith(PREFIX)}
    for cal_id, calendar in sorted(calendars.items()):
        devices = sorted(d for d, c in assigned.items() if c == cal_id)
        if not devices:
            continue
        group_name = f"{PREFIX}{cal_id}"[:64]
        default = calendar.get("defaultProgram")
        names = [default] + [r.get("program") for r in calendar.get("rules") or []]
        for name in names:
            if name is None:
                continue
            if name not in programs:
                raise TalqError(
                    422,
                    "relatedResourceNotFound",
                    f"calendar {cal_id!r} refers to control program {name!r}, "
                    "which this gateway does not have",
                )
            progs[f"{PREFIX}{name}"] = program(programs[name])
        if default is None:
            raise unprocessable("payloadError", f"calendar {cal_id!r} has no defaultProgram")
        groups.append({"name": group_name, "devices": devices, "program": f"{PREFIX}{default}"})
        exceptions += _rule_exceptions(cal_id, calendar, group_name)
    doc.update(groups=groups, programs=progs, exceptions=exceptions)
    return doc


def _rule_exceptions(cal_id: str, calendar: dict[str, Any], group: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for rule in calendar.get("rules") or []:
        name = f"{PREFIX}{rule['program']}"
        condition = rule.get("condition") or {}
        start, end = rule.get("startDate"), rule.get("endDate")
        if condition.get("type") == "ccDay" and not condition.get("occurrences"):
            days: set[str] = set()
            for span in condition.get("days") or []:
                first = int(span["start"])
                last = int(span.get("end", first))
                if not 1 <= first <= 7 or not 1 <= last <= 7:
                    raise ValueError(f"day {first}-{last}: days are 1 (Monday) to 7")
                days |= {WEEKDAYS[d - 1] for d in range(first, max(first, last) + 1)}
            out.append(
                {"weekdays": sorted(days, key=WEEKDAYS.index), "program": name, "groups": [group]}
            )
        elif not condition and isinstance(start, str) and start == end and DATE.match(start):
            out.append({"date": start, "program": name, "groups": [group]})
        else:
            raise unprocessable(
                "serviceConstraintExceeded",
                f"calendar {cal_id!r}: this gateway runs rules for weekdays "
                "(ccDay without occurrences) or for one date",
            )
    return out
