"""TALQ calendars and control programs → the agent's lighting document.

The lighting controller runs programs offline, stored durably and applied
atomically (`LightingController.push`); TALQ is one more way to write its
document. A `ControlProgramOne` becomes a program of steps:

- `astroClockTimeControls` (sunset/sunrise ± minutes) → `sunset+N` / `sunrise-N`
- `fixedTimeControls` (`HH:MM[:SS]`) → `HH:MM`
- an `AstroClockActivePeriod` or `AbsoluteActivePeriod` → the night's start and its
  `off`; from the start to the first switch point the lamps are at 100 %.

A calendar becomes a lighting group per calendar with the lamps assigned to it
(by their `calendarID`): its `defaultProgram` is the group's program; its rules, in
order, become exceptions: `startDate` / `endDate` (full dates; absent, or the
year's first / last day as `--MM-DD`, is an open end) a range, or both `--MM-DD` a
range every year (`12-08` to `01-06`, across New Year); a `ccDay` condition
weekdays within it (its `occurrences` those of the month), a `ccDate` condition the
dates it takes between two full dates.
Lamps no calendar claims keep the groups and programs of the configured document.
"""

from __future__ import annotations

import datetime as dt
import re
from calendar import monthrange
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
    open_groups = [g["name"] for g in groups if not g.get("corridor")]
    exceptions = []
    for e in base.get("exceptions", []):
        # the running document's exceptions stay with its own lamps: a lamp a calendar
        # claimed follows the CMS alone (an exception naming no group is spelled out)
        targets = [g for g in e["groups"] if g in kept_groups] if e.get("groups") else open_groups
        if targets:
            exceptions.append({**e, "groups": targets})
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
    """A calendar's rules, in their order (the first that takes a night wins, as in
    TALQ), as exceptions of the calendar's group."""
    out: list[dict[str, Any]] = []
    for rule in calendar.get("rules") or []:
        base = {"program": f"{PREFIX}{rule['program']}", "groups": [group]}
        first, last = _bounds(cal_id, rule)
        condition = rule.get("condition") or {}
        kind = condition.get("type")
        if not condition:
            if first is not None and first == last and not _yearly(first):
                out.append({**base, "date": first})
            elif first is None and last is None:  # unconditional, for ever: every night
                out.append({**base, "weekdays": list(WEEKDAYS)})
            else:
                out.append({**base, **_range(first, last)})
        elif kind == "ccDay":
            days = {"weekdays": _weekdays(cal_id, condition)}
            occurrences = _occurrences(cal_id, condition)
            out.append({**base, **_range(first, last), **days, **occurrences})
        elif kind == "ccDate":
            out += [{**base, **span} for span in _dated(cal_id, condition, first, last)]
        else:
            raise unprocessable(
                "serviceConstraintExceeded",
                f"calendar {cal_id!r}: condition {kind!r}: this gateway runs rules for "
                "weekdays (ccDay), for dates and date ranges, and ccDate within a rule's "
                "full startDate and endDate",
            )
    return out


# A gMonthDay bound at the year's end is no bound: the file's defaults for absent dates.
OPEN_START, OPEN_END = "--01-01", "--12-31"
GDAY = re.compile(r"^---(\d\d)$")
GMONTHDAY = re.compile(r"^--(\d\d)-(\d\d)$")
MAX_SPAN_DAYS = 3660  # ccDate is expanded over the rule's dates: ten years at most
MAX_SPANS = 64  # and into at most this many exceptions per rule


def _bounds(cal_id: str, rule: dict[str, Any]) -> tuple[str | None, str | None]:
    """The rule's first and last night: ISO dates, None for an open end (absent, or
    the year's first / last day as a gMonthDay: the defaults of the data model); or,
    when either is another gMonthDay, both as month-days ("MM-DD", a range every
    year, an open end its year's first or last day)."""
    written: list[tuple[str, str | None, str | None]] = []  # key, full date, month-day
    for key in ("startDate", "endDate"):
        value = rule.get(key)
        if value is None:
            written.append((key, None, None))
        elif isinstance(value, str) and DATE.match(value):
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                raise unprocessable(
                    "payloadError", f"calendar {cal_id!r}: {key} {value!r} is no date"
                ) from None
            written.append((key, value, None))
        elif isinstance(value, str) and (match := GMONTHDAY.match(value)):
            month, day = int(match.group(1)), int(match.group(2))
            if not 1 <= month <= 12 or not 1 <= day <= monthrange(2000, month)[1]:
                raise unprocessable(
                    "payloadError", f"calendar {cal_id!r}: {key} {value!r} is no day of the year"
                )
            written.append((key, None, value[2:]))
        else:
            raise unprocessable("payloadError", f"calendar {cal_id!r}: {key} {value!r} is no date")
    (_, start, start_md), (_, end, end_md) = written
    if start_md not in (None, OPEN_START[2:]) or end_md not in (None, OPEN_END[2:]):
        dated = [(k, d) for k, d, _ in written if d is not None]
        if dated:
            key, full = dated[0]
            raise unprocessable(
                "serviceConstraintExceeded",
                f"calendar {cal_id!r}: a rule from {rule.get('startDate')!r} to "
                f"{rule.get('endDate')!r}: this gateway runs a range every year (--MM-DD) "
                f"or between dates, not both ({key} {full!r} is a date)",
            )
        return start_md or OPEN_START[2:], end_md or OPEN_END[2:]
    if start is not None and end is not None and end < start:
        raise unprocessable(
            "payloadError", f"calendar {cal_id!r}: endDate {end} is before startDate {start}"
        )
    return start, end


def _yearly(bound: str) -> bool:
    return len(bound) == len("MM-DD")


def _range(first: str | None, last: str | None) -> dict[str, str]:
    return {k: v for k, v in (("from", first), ("until", last)) if v is not None}


def _weekdays(cal_id: str, condition: dict[str, Any]) -> list[str]:
    days: set[str] = set()
    for span in condition.get("days") or []:
        first = int(span["start"])
        last = int(span.get("end", first))
        if not 1 <= first <= 7 or not 1 <= last <= 7:
            raise ValueError(f"day {first}-{last}: days are 1 (Monday) to 7")
        days |= {WEEKDAYS[d - 1] for d in range(first, max(first, last) + 1)}
    if not days:
        raise unprocessable("payloadError", f"calendar {cal_id!r}: a ccDay condition names no day")
    return sorted(days, key=WEEKDAYS.index)


OCCURRENCES = {**{str(n): n for n in range(1, 6)}, "L": -1}  # ccDay's, as the exception's


def _occurrences(cal_id: str, condition: dict[str, Any]) -> dict[str, list[int]]:
    """A ccDay's `occurrences` ("1" to "5", "L" the last) as the exception's (-1 the last)."""
    written = condition.get("occurrences") or []
    if not isinstance(written, list):
        raise ValueError(f"occurrences {written!r}")
    found: list[int] = []
    for item in written:
        if not isinstance(item, str) or item not in OCCURRENCES:
            raise unprocessable(
                "payloadError",
                f"calendar {cal_id!r}: occurrence {item!r}: use '1' to '5' or 'L' (the last)",
            )
        if OCCURRENCES[item] not in found:
            found.append(OCCURRENCES[item])
    return {"occurrences": found} if found else {}


def _dated(
    cal_id: str, condition: dict[str, Any], first: str | None, last: str | None
) -> list[dict[str, str]]:
    """A ccDate condition (days of the month, `---DD`, or of the year, `--MM-DD`, each
    alone or as a span) as the dates and ranges it takes between the rule's dates."""
    if first is None or last is None or _yearly(first):
        raise unprocessable(
            "serviceConstraintExceeded",
            f"calendar {cal_id!r}: a ccDate condition recurs for ever (or every year); this "
            "gateway runs it within a rule's full startDate and endDate",
        )
    items = [_date_item(cal_id, item) for item in condition.get("dates") or []]
    if not items:
        raise unprocessable(
            "payloadError", f"calendar {cal_id!r}: a ccDate condition names no date"
        )
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    if (end - start).days >= MAX_SPAN_DAYS:
        raise unprocessable(
            "serviceConstraintExceeded",
            f"calendar {cal_id!r}: a ccDate rule may span {MAX_SPAN_DAYS} days at most",
        )
    runs: list[list[dt.date]] = []
    day = start
    while day <= end:
        if any(lo <= _key(day, lo) <= hi for lo, hi in items):
            if runs and runs[-1][1] == day - dt.timedelta(days=1):
                runs[-1][1] = day
            else:
                runs.append([day, day])
        day += dt.timedelta(days=1)
    if len(runs) > MAX_SPANS:
        raise unprocessable(
            "serviceConstraintExceeded",
            f"calendar {cal_id!r}: a ccDate rule takes {len(runs)} separate dates or ranges "
            f"between its startDate and endDate; this gateway runs {MAX_SPANS} at most",
        )
    return [
        {"date": a.isoformat()} if a == b else {"from": a.isoformat(), "until": b.isoformat()}
        for a, b in runs
    ]


DateKey = tuple[int, ...]


def _key(day: dt.date, like: DateKey) -> DateKey:
    """`day` as the item it is compared with: (day,) for `---DD`, (month, day) for `--MM-DD`."""
    return (day.day,) if len(like) == 1 else (day.month, day.day)


def _date_item(cal_id: str, item: dict[str, Any]) -> tuple[DateKey, DateKey]:
    def parse(text: Any) -> DateKey:
        for pattern in (GDAY, GMONTHDAY):
            match = pattern.match(text) if isinstance(text, str) else None
            if match:
                return tuple(int(g) for g in match.groups())
        raise unprocessable(
            "payloadError", f"calendar {cal_id!r}: ccDate {text!r} is neither ---DD nor --MM-DD"
        )

    lo = parse(item["start"])
    hi = parse(item.get("end", item["start"]))
    if len(lo) != len(hi) or hi < lo:
        raise unprocessable(
            "payloadError",
            f"calendar {cal_id!r}: ccDate {item['start']!r} to {item.get('end')!r}: the end "
            "must be of the start's kind and after it",
        )
    return lo, hi
