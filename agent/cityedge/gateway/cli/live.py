"""What the running agent says: `cityedge status`, `devices` and live `read`s."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from cityedge.gateway.cli.common import (
    STATE_STYLE,
    ConfigOption,
    JsonFlag,
    SocketOption,
    ago,
    call,
    client,
    clock_time,
    console,
    print_json,
    shown,
    size,
)

if TYPE_CHECKING:
    from rich.console import Console


def status(
    config: ConfigOption = None, socket: SocketOption = None, as_json: JsonFlag = False
) -> None:
    """Uplink, outbox, drivers and devices, clock, overrides in force, version and uptime."""
    data = call(client(socket, config), "status")
    if as_json:
        print_json(data)
        return
    from rich.table import Table

    from cityedge.gateway.control.values import format_duration

    out = console()
    gw = data["gateway"]
    out.print(
        f"[bold]{gw['id']}[/] at {gw['site']} — cityedge {data['version']}, "
        f"up {format_duration(data['uptime'])}"
    )
    up = data["uplink"]
    colour = {"up": "green", "connecting": "yellow"}.get(up["state"], "red")
    line = f"[{colour}]{up['state']}[/] since {clock_time(up['since'])} ({ago(up['since'])})"
    if up.get("last_error"):
        line += f" — last error: {up['last_error']}"
    box = data["outbox"]
    rows = ", ".join(f"{k} {v}" for k, v in box["rows"].items()) or "empty"
    oldest = "—" if box["oldest_age"] is None else format_duration(box["oldest_age"])
    counts = data["devices"]
    clock = data["clock"]
    synced = {True: "[green]synchronised[/]", False: "[red]NOT synchronised[/]"}.get(
        clock["synchronised"], "[yellow]unknown[/]"
    )
    grid = Table.grid(padding=(0, 2))
    grid.add_row("Uplink", f"{line}  → {up['broker']}")
    grid.add_row(
        "Outbox",
        f"{box['depth']} rows ({rows}) · {size(box['bytes'])} · oldest {oldest} · "
        f"{box['sealed_unacked']} sent, awaiting ack",
    )
    grid.add_row(
        "Devices",
        f"[green]{counts['up']} up[/], [red]{counts['down']} down[/], "
        f"[yellow]{counts['degraded']} degraded[/], {counts['unknown']} unknown "
        f"({counts['total']})",
    )
    grid.add_row("Clock", f"{synced} ({clock['source']})")
    out.print(grid)
    if data["drivers"]:
        table = Table(title="Drivers", title_justify="left")
        for column in ("Driver", "Kind", "Task", "Devices", "Restarts", "Last error"):
            table.add_column(column)
        for d in data["drivers"]:
            states = ", ".join(f"{n} {s}" for s, n in sorted(d["states"].items()))
            task = "[green]running[/]" if d["running"] else "[red]stopped[/]"
            table.add_row(
                d["name"],
                d["kind"] or "?",
                task,
                states or "0",
                str(d["restarts"]),
                d["last_error"] or "",
            )
        out.print(table)
    if data["overrides"]:
        _print_overrides(out, data["overrides"])


def _print_overrides(out: Console, overrides: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from cityedge.gateway.control.values import format_duration

    table = Table(title="[yellow]Local overrides in force[/]", title_justify="left")
    for column in ("Point", "Value", "Restores", "Ends", "By"):
        table.add_column(column)
    for o in overrides:
        ends = f"{clock_time(o['until'])} (in {format_duration(o['remaining'])})"
        if o.get("restoring"):
            ends = f"[red]restoring[/] ({o.get('last_error') or 'pending'})"
        table.add_row(
            f"{o['device']}.{o['point']}", str(o["value"]), str(o["previous"]), ends, o["user"]
        )
    out.print(table)


def devices(
    config: ConfigOption = None, socket: SocketOption = None, as_json: JsonFlag = False
) -> None:
    """Every device: driver, state, last seen, latency, errors."""
    data = call(client(socket, config), "devices")
    if as_json:
        print_json(data)
        return
    from rich.table import Table

    table = Table()
    for column in ("Device", "Type", "Driver", "State", "Last seen", "Latency", "Errors"):
        table.add_column(column, justify="right" if column in ("Latency", "Errors") else "left")
    for d in data:
        style = STATE_STYLE.get(d["state"], "")
        latency = "—" if d["latency_ms"] is None else f"{d['latency_ms']:.0f} ms"
        errors = ", ".join(f"{k} {v}" for k, v in sorted(d["errors"].items())) or "0"
        table.add_row(
            d["device"],
            d.get("type") or "?",
            d["driver"],
            f"[{style}]{d['state']}[/]" if style else d["state"],
            ago(d["last_seen"]),
            latency,
            errors,
        )
    console().print(table)


def read(
    device: Annotated[str, typer.Argument(help="Device name (see `cityedge devices`).")],
    points: Annotated[
        list[str] | None, typer.Argument(help="Point(s) to read; all when none given.")
    ] = None,
    config: ConfigOption = None,
    socket: SocketOption = None,
    as_json: JsonFlag = False,
) -> None:
    """A live read through the device's driver (not the last polled value)."""
    data = call(client(socket, config), "read", device=device, points=points or None)
    if as_json:
        print_json(data)
        return
    from rich.table import Table

    table = Table(
        title=f"{data['device']} ({data['type']}, driver {data['driver']})", title_justify="left"
    )
    for column in ("Point", "Value", "Unit", "Read at"):
        table.add_column(column)
    for r in data["readings"]:
        table.add_row(r["point"], shown(r["value"]), r["unit"] or "", clock_time(r["ts"]))
    console().print(table)
