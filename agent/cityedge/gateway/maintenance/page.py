"""The maintenance page: one self-contained HTML document for a phone at the cabinet.

A pure function of the status read-model (`cityedge.gateway.control.status`, built
by `cityedge.gateway.control.snapshot`), so it can be tested without a server. No
scripts and no external assets: the gateway may have no route to the internet,
and the page must not need one. It reloads itself every 15 s.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cityedge.gateway.control.values import format_duration
from cityedge.gateway.maintenance.verdict import problem_first, trouble, verdict

if TYPE_CHECKING:
    from cityedge.gateway.control.status import (
        DeviceStatus,
        DriverStatus,
        OverrideStatus,
        Status,
    )
    from cityedge.gateway.diagnostics.record import CheckRecord

REFRESH_SECONDS = 15
STALE_CHECK_SECONDS = 15 * 60  # a check older than this reads "stale", its marks greyed

STYLE = """
:root{color-scheme:light dark;--ok:#1a7f37;--warn:#9a6700;--fail:#cf222e;--mute:#6e7781}
*{box-sizing:border-box}
body{font:16px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;padding:12px;
max-width:960px;margin-inline:auto}
h1{font-size:1.3rem;margin:.2em 0}h2{font-size:1.1rem;margin:1.2em 0 .4em}
.sub{color:var(--mute);font-size:.9rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:8px}
.card{border:1px solid #8884;border-radius:8px;padding:8px 10px}
.card b{display:block;font-size:1.15rem}
.ok{color:var(--ok)}.warn{color:var(--warn)}.fail{color:var(--fail)}.mute{color:var(--mute)}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #8883;white-space:nowrap}
td.wrap{white-space:normal;min-width:12em}
th{font-weight:600;color:var(--mute)}
footer{margin-top:2em;color:var(--mute);font-size:.8rem}
#verdict{font-size:1.15rem;font-weight:600;margin:.3em 0 .6em;overflow-wrap:anywhere}
#devices{list-style:none;padding:0;margin:.4em 0}
#devices li{padding:8px 0;border-bottom:1px solid #8883;overflow-wrap:anywhere}
.state{font-weight:600;margin-left:.4em}.why{margin:.15em 0}
.stale{color:var(--mute)}
#checks{list-style:none;padding:0;margin:.4em 0}
#checks li{padding:6px 0;border-bottom:1px solid #8883;overflow-wrap:anywhere}
"""

STATE_CLASS = {"up": "ok", "degraded": "warn", "down": "fail", "unknown": "mute"}
CHECK_MARK = {"ok": ("✔", "ok"), "warn": ("⚠", "warn"), "fail": ("✘", "fail")}


def e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def ago(ts: float | None, now: float) -> str:
    return "never" if ts is None else f"{format_duration(now - ts)} ago"


def render(
    status: Status,
    devices: Sequence[DeviceStatus],
    last_check: CheckRecord | None,
    now: float | None = None,
) -> str:
    now = time.time() if now is None else now
    gateway = status.gateway
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name=viewport content="width=device-width,initial-scale=1">',
        f'<meta http-equiv=refresh content="{REFRESH_SECONDS}">',
        f"<title>{e(gateway.id)} · cityedge</title><style>{STYLE}</style></head><body>",
        f"<h1>{e(gateway.id)}</h1>",
        _verdict(status, devices, now),
        f"<div class=sub>site {e(gateway.site)} · cityedge {e(status.version)} · "
        f"up {e(format_duration(status.uptime))}</div>",
        _cards(status, now),
        _overrides(status.overrides, now),
        _devices(devices, now),
        _drivers(status.drivers),
        _check(last_check, devices, now),
        f"<footer>Read-only. Generated {e(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now)))}"
        f" · <a href=/metrics>metrics</a></footer></body></html>",
    ]
    return "".join(parts)


def _cards(status: Status, now: float) -> str:
    up = status.uplink
    link_class = {"up": "ok", "connecting": "warn"}.get(up.state, "fail")
    box = status.outbox
    counts = status.devices
    device_class = "fail" if counts.down else "warn" if counts.degraded else "ok"
    clock = status.clock
    clock_text, clock_class = {
        True: ("synchronised", "ok"),
        False: ("not synchronised", "fail"),
        None: ("unknown", "warn"),
    }[clock.synchronised]
    oldest_text = "—" if box.oldest_age is None else e(format_duration(box.oldest_age))
    cards = [
        (
            "Uplink",
            f"<span class={link_class}>{e(up.state)}</span>",
            f"for {e(format_duration(now - up.since))}"
            + (f"<br>{e(up.last_error)}" if up.last_error else ""),
        ),
        (
            "Outbox",
            "empty" if box.depth == 0 else f"{box.depth} waiting",
            "nothing waits to go up"
            if box.depth == 0
            else (f"{_size(box.bytes)} · " if box.bytes else "not yet on disk · ")
            + f"oldest {oldest_text}",
        ),
        (
            "Devices",
            f"<span class={device_class}>{counts.up}/{counts.total} up</span>",
            f"{counts.down} down · {counts.degraded} degraded",
        ),
        ("Clock", f"<span class={clock_class}>{clock_text}</span>", e(clock.source)),
    ]
    inner = "".join(
        f"<div class=card>{title}<b>{value}</b><span class=sub>{sub}</span></div>"
        for title, value, sub in cards
    )
    return f"<h2>Health</h2><div class=cards>{inner}</div>"


def _verdict(status: Status, devices: Sequence[DeviceStatus], now: float) -> str:
    text, cls = verdict(devices)
    line = f"<p id=verdict class={cls}>{e(text)}</p>"
    up = status.uplink
    if up.state != "up":
        line += (
            f"<p class=fail>Uplink {e(up.state)} for {e(format_duration(now - up.since))}"
            + (f": {e(up.last_error)}" if up.last_error else "")
            + " — readings wait in the outbox</p>"
        )
    return line


def _devices(devices: Sequence[DeviceStatus], now: float) -> str:
    if not devices:
        return "<h2>Devices</h2><p class=mute>No devices configured.</p>"
    items = []
    for d in problem_first(devices):
        cls = STATE_CLASS.get(d.state, "mute")
        found = trouble(d)
        why = f"<div class='why {cls}'>{e(found.what)}: {e(found.why)}</div>" if found else ""
        latency = "" if d.latency_ms is None else f" · {d.latency_ms:.0f} ms"
        kind = e(d.type) if d.type else "radio link"
        items.append(
            f"<li id='device-{e(d.device)}'><b>{e(d.device)}</b>"
            f"<span class='state {cls}'>{e(d.state)}</span>{why}"
            f"<div class=sub>last seen {e(ago(d.last_seen, now))}{e(latency)} · {kind} · "
            f"{e(d.driver)}</div></li>"
        )
    real = sum(1 for d in devices if d.type)
    return f"<h2>Devices ({real})</h2><ul id=devices>{''.join(items)}</ul>"


def _drivers(drivers: Sequence[DriverStatus]) -> str:
    if not drivers:
        return ""
    rows = "".join(
        f"<tr><td>{e(d.name)}</td><td>{e(d.kind)}</td>"
        f"<td class={'ok' if d.running else 'fail'}>{'running' if d.running else 'stopped'}"
        f"</td><td>{d.restarts}</td><td class=wrap>{e(d.last_error or '')}</td></tr>"
        for d in drivers
    )
    return (
        "<h2>Drivers</h2><div class=scroll><table><thead><tr><th>Driver</th><th>Kind</th>"
        f"<th>Task</th><th>Restarts</th><th>Last error</th></tr></thead><tbody>{rows}"
        "</tbody></table></div>"
    )


def _overrides(overrides: Sequence[OverrideStatus], now: float) -> str:
    if not overrides:
        return ""
    rows = "".join(
        f"<tr><td>{e(o.device)}.{e(o.point)}</td><td>{e(_value(o.value))}</td>"
        f"<td>{e(_value(o.previous))}</td><td>{e(format_duration(o.until - now))}</td>"
        f"<td>{e(o.user)}</td></tr>"
        for o in overrides
    )
    return (
        "<h2 class=warn>Local overrides in force</h2><div class=scroll><table><thead><tr>"
        "<th>Point</th><th>Value</th><th>Restores</th><th>Left</th><th>By</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
    )


def _check(last: CheckRecord | None, devices: Sequence[DeviceStatus], now: float) -> str:
    if not last:
        return (
            "<h2>Last check</h2><p class=mute>No check recorded yet: "
            "run <code>cityedge check</code> on the gateway.</p>"
        )
    # Results that no longer hold: old, or a device changed state since they were taken.
    changed = [d.device for d in devices if d.since is not None and d.since > last.ts]
    stale = now - last.ts > STALE_CHECK_SECONDS or bool(changed)
    mark, cls = CHECK_MARK.get(last.status.label, ("?", "mute"))
    items = []
    for r in last.results:
        m, c = CHECK_MARK.get(r.status.label, ("?", "mute"))
        if stale:
            m, c = "·", "stale"  # no ✔ for what may no longer be true
        remedy = f"<div class=sub>→ {e(r.remedy)}</div>" if r.remedy else ""
        items.append(
            f"<li><span class={c}>{m}</span> <b>{e(r.name)}</b>"
            f"<div>{e(r.detail)}</div>{remedy}</li>"
        )
    by = f" by {e(last.user)}" if last.user else ""
    if stale:
        since = f"; since then {e(', '.join(changed))} changed state" if changed else ""
        return (
            f"<h2>Last check <span class=stale>(stale)</span></h2>"
            f"<div class='sub stale' id=check-age>stale: {e(ago(last.ts, now))}{by}{since} — "
            f"run <code>cityedge check</code> again</div>"
            f"<ul id=checks class=stale>{''.join(items)}</ul>"
        )
    return (
        f"<h2>Last check <span class={cls}>{mark}</span></h2>"
        f"<div class=sub id=check-age>{e(ago(last.ts, now))}{by}</div>"
        f"<ul id=checks>{''.join(items)}</ul>"
    )


def _value(value: object) -> object:
    """Flags read on/off, as in the CLI."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return value


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
