"""What the running agent says: `cityedge status`, `devices` and live `read`s."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

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
    shaped,
    shaped_each,
    shown,
    size,
)

if TYPE_CHECKING:
    from rich.console import Console

    from cityedge.gateway.control.status import OverrideStatus


def status(
    config: ConfigOption = None, socket: SocketOption = None, as_json: JsonFlag = False
) -> None:
    """Uplink, outbox, drivers and devices, clock, overrides in force, version and uptime."""
    data = call(client(socket, config), "status")
    if as_json:
        print_json(data)  # as the agent said it, keys it may know and we do not included
        return
    from rich.table import Table

    from cityedge.gateway.control.status import Status
    from cityedge.gateway.control.values import format_duration

    st = shaped(Status, data)
    out = console()
    out.print(
        f"[bold]{st.gateway.id}[/] at {st.gateway.site} — cityedge {st.version}, "
        f"up {format_duration(st.uptime)}"
    )
    up = st.uplink
    colour = {"up": "green", "connecting": "yellow"}.get(up.state, "red")
    line = f"[{colour}]{up.state}[/] since {clock_time(up.since)} ({ago(up.since)})"
    if up.last_error:
        line += f" — last error: {up.last_error}"
    box = st.outbox
    rows = ", ".join(f"{k} {v}" for k, v in box.rows.items()) or "empty"
    oldest = "—" if box.oldest_age is None else format_duration(box.oldest_age)
    counts = st.devices
    synced = {
        True: "[green]synchronised[/]",
        False: "[red]NOT synchronised[/]",
        None: "[yellow]unknown[/]",
    }[st.clock.synchronised]
    grid = Table.grid(padding=(0, 2))
    grid.add_row("Uplink", f"{line}  → {up.broker}")
    grid.add_row(
        "Outbox",
        f"{box.depth} rows ({rows}) · {size(box.bytes)} · oldest {oldest} · "
        f"{box.sealed_unacked} sent, awaiting ack",
    )
    grid.add_row(
        "Devices",
        f"[green]{counts.up} up[/], [red]{counts.down} down[/], "
        f"[yellow]{counts.degraded} degraded[/], {counts.unknown} unknown "
        f"({counts.total})",
    )
    grid.add_row("Clock", f"{synced} ({st.clock.source})")
    out.print(grid)
    if st.drivers:
        table = Table(title="Drivers", title_justify="left")
        for column in ("Driver", "Kind", "Task", "Devices", "Restarts", "Last error"):
            table.add_column(column)
        for d in st.drivers:
            states = ", ".join(f"{n} {s}" for s, n in sorted(d.states.items()))
            task = "[green]running[/]" if d.running else "[red]stopped[/]"
            table.add_row(
                d.name, d.kind or "?", task, states or "0", str(d.restarts), d.last_error or ""
            )
        out.print(table)
    if st.overrides:
        _print_overrides(out, st.overrides)


def _print_overrides(out: Console, overrides: Sequence[OverrideStatus]) -> None:
    from rich.table import Table

    from cityedge.gateway.control.values import format_duration

    table = Table(title="[yellow]Local overrides in force[/]", title_justify="left")
    for column in ("Point", "Value", "Restores", "Ends", "By"):
        table.add_column(column)
    for o in overrides:
        ends = f"{clock_time(o.until)} (in {format_duration(o.remaining)})"
        if o.restoring:
            ends = f"[red]restoring[/] ({o.last_error or 'pending'})"
        table.add_row(f"{o.device}.{o.point}", str(o.value), str(o.previous), ends, o.user)
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

    from cityedge.gateway.control.status import DeviceStatus

    table = Table()
    for column in ("Device", "Type", "Driver", "State", "Last seen", "Latency", "Errors"):
        table.add_column(column, justify="right" if column in ("Latency", "Errors") else "left")
    for d in shaped_each(DeviceStatus, data):
        style = STATE_STYLE.get(d.state, "")
        latency = "—" if d.latency_ms is None else f"{d.latency_ms:.0f} ms"
        errors = ", ".join(f"{k} {v}" for k, v in sorted(d.errors.items())) or "0"
        table.add_row(
            d.device,
            d.type or "?",
            d.driver,
            f"[{style}]{d.state}[/]" if style else d.state,
            ago(d.last_seen),
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
