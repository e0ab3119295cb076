"""`cityedge write`: a local, time-limited override through the running agent."""

from __future__ import annotations

from typing import Annotated

import typer

from cityedge.gateway.cli.common import (
    ConfigOption,
    JsonFlag,
    SocketOption,
    call,
    client,
    clock_time,
    fail,
    print_json,
    shown,
)


def write(
    device: Annotated[str, typer.Argument(help="Device name.")],
    point: Annotated[str, typer.Argument(help="Point to write (read-write in the profile).")],
    value: Annotated[
        str | None, typer.Argument(help="New value: a number, on/off, or text.")
    ] = None,
    duration: Annotated[
        str,
        typer.Option("--for", help="How long the override lasts (90s, 15m, 2h; max 24h)."),
    ] = "1h",
    end: Annotated[
        bool, typer.Option("--end", help="End the override on this point now (restore).")
    ] = False,
    config: ConfigOption = None,
    socket: SocketOption = None,
    as_json: JsonFlag = False,
) -> None:
    """A local, time-limited override, through the command post's policy.

    The previous value comes back when it ends; the write is audited with your
    user and reported to the command post as a local.override event."""
    from cityedge.gateway.control.values import ValueProblem, format_duration, parse_duration

    if end:
        data = call(client(socket, config), "override.end", device=device, point=point)
        if as_json:
            print_json(data)
        else:
            typer.echo(f"{device}.{point}: override ended; restoring {shown(data['previous'])}")
        return
    if value is None:
        fail("write needs a VALUE (or --end to end an override)")
    try:
        seconds = parse_duration(duration)
    except ValueProblem as exc:
        fail(f"--for: {exc}")
    data = call(
        client(socket, config), "write", device=device, point=point, value=value, **{"for": seconds}
    )
    if as_json:
        print_json(data)
        return
    readback = "" if data.get("readback") is None else f", reads back {shown(data['readback'])}"
    typer.echo(
        f"{device}.{point} = {shown(data['value'])}{readback}; until {clock_time(data['until'])} "
        f"({format_duration(data['until'] - data['started'])}), then back to "
        f"{shown(data['previous'])}. Reported to the command post as {data['user']}."
    )
