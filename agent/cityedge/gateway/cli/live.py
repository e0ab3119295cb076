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
    on_terminal,
    outbox_summary,
    print_json,
    print_table,
    shaped,
    shaped_each,
    shown,
    size,
)

if TYPE_CHECKING:
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
    oldest = "" if box.oldest_age is None else f" · oldest {format_duration(box.oldest_age)}"
    counts = st.devices
    synced = {
        True: "[green]synchronised[/]",
        False: "[red]NOT synchronised[/]",
        None: "[yellow]unknown[/]",
    }[st.clock.synchronised]
    waiting = outbox_summary(box.depth, box.rows)
    if box.depth:
        waiting += f" · {size(box.bytes)}{oldest}"
    rows = {
        "Uplink": f"{line}  → {up.broker}",
        "Outbox": f"{waiting} · {box.sealed_unacked} sent, awaiting ack",
        "Devices": f"[green]{counts.up} up[/], [red]{counts.down} down[/], "
        f"[yellow]{counts.degraded} degraded[/], {counts.unknown} unknown ({counts.total})",
        "Clock": f"{synced} ({st.clock.source})",
    }
    if on_terminal():
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")
        for name, text in rows.items():
            grid.add_row(name, text)
        out.print(grid)
    else:  # one line each, never folded at 80 columns
        for name, text in rows.items():
            out.print(f"{name:<8} {text}")
    if st.drivers:
        print_table(
            ("Driver", "Kind", "Task", "Devices", "Restarts", "Last error"),
            [
                [
                    d.name, d.kind or "?", "running" if d.running else "stopped",
                    ", ".join(f"{n} {s}" for s, n in sorted(d.states.items())) or "0",
                    str(d.restarts), d.last_error or "",
                ]
                for d in st.drivers
            ],
            title="Drivers",
            styles=[[None, None, "green" if d.running else "red"] + [None] * 3 for d in st.drivers],
        )  # fmt: skip
    if st.overrides:
        _print_overrides(st.overrides)


def _print_overrides(overrides: Sequence[OverrideStatus]) -> None:
    from cityedge.gateway.control.values import format_duration

    rows = []
    for o in overrides:
        ends = f"{clock_time(o.until)} (in {format_duration(o.remaining)})"
        if o.restoring:
            ends = f"restoring ({o.last_error or 'pending'})"
        rows.append([f"{o.device}.{o.point}", shown(o.value), shown(o.previous), ends, o.user])
    print_table(("Point", "Value", "Restores", "Ends", "By"), rows,
                title="Local overrides in force")  # fmt: skip


def devices(
    config: ConfigOption = None, socket: SocketOption = None, as_json: JsonFlag = False
) -> None:
    """Every device: driver, state, last seen, latency, errors.

    Links that are not devices (a LoRaWAN packet forwarder) are listed apart: the
    devices are exactly those `cityedge read` knows."""
    data = call(client(socket, config), "devices")
    if as_json:
        print_json(data)
        return
    from cityedge.gateway.control.status import DeviceStatus

    everything = shaped_each(DeviceStatus, data)
    columns = ("Device", "Type", "Driver", "State", "Last seen", "Latency", "Errors")
    for title, group in (
        (f"{sum(1 for d in everything if d.type)} devices", [d for d in everything if d.type]),
        ("Links (radio gateways: not devices, not readable)",
         [d for d in everything if not d.type]),
    ):  # fmt: skip
        if not group and title.startswith("Links"):
            continue
        rows = [
            [
                d.device, d.type or "-", d.driver, d.state, ago(d.last_seen),
                "-" if d.latency_ms is None else f"{d.latency_ms:.0f} ms",
                ", ".join(f"{k} {v}" for k, v in sorted(d.errors.items())) or "0",
            ]
            for d in group
        ]  # fmt: skip
        styles = [[None, None, None, STATE_STYLE.get(d.state)] + [None] * 3 for d in group]
        print_table(columns, rows, title=title, right=("Latency", "Errors"), styles=styles)


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
    print_table(
        ("Point", "Value", "Unit", "Read at"),
        [
            [r["point"], shown(r["value"]), r["unit"] or "", clock_time(r["ts"])]
            for r in data["readings"]
        ],
        title=f"{data['device']} ({data['type']}, driver {data['driver']})",
    )
