"""Commands for field technicians and maintenance crews.

    cityedge status | devices | read | write | outbox [export] | check | support-bundle

Most talk to the running agent over its control socket (`--socket PATH`, or
the path from `-c CONFIG`); `check`, `support-bundle` and `outbox` also work
with the agent stopped. Tables on a terminal, `--json` for scripts. Exit
status: 0 done, 1 the agent refused (unknown device, denied by policy, device
error), 2 bad input, 3 agent not reachable; `check` exits with its worst
result (0 ok, 1 warning, 2 failure).

Mounted into the main app by `register(app)`; `python -m cityedge.gateway.cli.technician`
runs the same commands on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from cityedge.gateway.control.client import ControlClient

DEFAULT_CONFIG = Path("/etc/cityedge/agent.toml")
EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3

app = typer.Typer(
    help="Technician commands: status, devices, live reads, local overrides, checks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
outbox_app = typer.Typer(
    help="The outbox: statistics (default), or `export FILE` to JSON lines.",
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="CITYEDGE_CONFIG",
        help=f"Agent config file (default: {DEFAULT_CONFIG}).",
        show_default=False,
    ),
]
SocketOption = Annotated[
    Path | None,
    typer.Option("--socket", help="Control socket (default: control.socket of the config)."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts, not tables.")]


# --- plumbing -------------------------------------------------------------------------


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.echo(f"cityedge: {message}", err=True)
    raise typer.Exit(code)


def config_path(config: Path | None) -> Path:
    return config or DEFAULT_CONFIG


def load(config: Path | None) -> Any:
    from cityedge.gateway.config import ConfigError, load_config

    try:
        return load_config(config_path(config))
    except ConfigError as err:
        first = err.problems[0] if err.problems else "invalid"
        more = f" (and {len(err.problems) - 1} more)" if len(err.problems) > 1 else ""
        fail(f"{err.source}: {first}{more}")


def client(socket: Path | None, config: Path | None, timeout: float = 30.0) -> ControlClient:
    from cityedge.gateway.control.client import ControlClient

    if socket is not None:
        return ControlClient(socket, timeout)
    from cityedge.gateway.config import ConfigError, load_config

    path = config_path(config)
    try:
        loaded = load_config(path)
    except ConfigError as err:
        first = err.problems[0] if err.problems else "invalid"
        fail(f"cannot find the control socket from {path}: {first}; pass --socket PATH")
    return ControlClient(loaded.config.control_socket_path, timeout)


def call(control: ControlClient, op: str, **arguments: Any) -> Any:
    from cityedge.gateway.control.protocol import AgentUnreachable, ControlError

    try:
        return control.call(op, **arguments)
    except AgentUnreachable as exc:
        fail(str(exc), EXIT_UNREACHABLE)
    except ControlError as exc:
        fail(str(exc), EXIT_REFUSED)


def console() -> Console:
    from rich.console import Console

    # Not on a terminal: no hard wrapping at 80 columns, so lines stay greppable.
    return Console(highlight=False, soft_wrap=not sys.stdout.isatty())


def quiet_logs() -> None:
    """Drivers built for a check log their failures; the check reports them itself."""
    from cityedge.sdk.logs import configure_logging

    configure_logging("error", "console")


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def ago(ts: float | None, now: float | None = None) -> str:
    from cityedge.gateway.control.values import format_duration

    if ts is None:
        return "never"
    return f"{format_duration((now or time.time()) - ts)} ago"


def clock_time(ts: float | None) -> str:
    if ts is None:
        return "—"
    fmt = "%H:%M:%S" if time.time() - ts < 86400 else "%Y-%m-%d %H:%M"
    return time.strftime(fmt, time.localtime(ts))


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


STATE_STYLE = {"up": "green", "degraded": "yellow", "down": "red", "unknown": "dim"}


# --- status ------------------------------------------------------------------------


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


# --- devices and live reads ----------------------------------------------------------


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
        table.add_row(r["point"], _shown(r["value"]), r["unit"] or "", clock_time(r["ts"]))
    console().print(table)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


# --- local overrides ------------------------------------------------------------------


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
            typer.echo(f"{device}.{point}: override ended; restoring {_shown(data['previous'])}")
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
    readback = "" if data.get("readback") is None else f", reads back {_shown(data['readback'])}"
    typer.echo(
        f"{device}.{point} = {_shown(data['value'])}{readback}; until {clock_time(data['until'])} "
        f"({format_duration(data['until'] - data['started'])}), then back to "
        f"{_shown(data['previous'])}. Reported to the command post as {data['user']}."
    )


# --- outbox ----------------------------------------------------------------------------


@outbox_app.callback(invoke_without_command=True)
def outbox(
    ctx: typer.Context,
    config: ConfigOption = None,
    socket: SocketOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Outbox statistics: from the running agent, else read from the file (read-only)."""
    if ctx.invoked_subcommand is not None:
        return
    from cityedge.gateway.control.protocol import AgentUnreachable, ControlError

    try:
        data = client(socket, config).call("outbox")
        data["source"] = "agent"
    except AgentUnreachable:
        data = _outbox_from_file(config)
    except ControlError as exc:
        fail(str(exc), EXIT_REFUSED)
    if as_json:
        print_json(data)
        return
    from cityedge.gateway.control.values import format_duration

    rows = ", ".join(f"{k} {v}" for k, v in data["rows"].items()) or "empty"
    oldest = "—" if data["oldest_age"] is None else format_duration(data["oldest_age"])
    where = "agent" if data["source"] == "agent" else "file (agent not running)"
    typer.echo(
        f"outbox {data['path']} (from the {where})\n"
        f"  rows     {data['depth']} ({rows})\n"
        f"  bytes    {size(data['bytes'])}\n"
        f"  oldest   {oldest}\n"
        f"  sealed   {data['sealed_unacked']} sent, awaiting ack; last sequence {data['last_seq']}"
    )
    if data.get("evicted"):
        typer.echo(f"  evicted  {data['evicted']}")


def _outbox_from_file(config: Path | None, path: Path | None = None) -> dict[str, Any]:
    from cityedge.gateway.diagnostics.outbox_file import OutboxFileError, file_stats

    target = path or load(config).config.outbox_path
    try:
        return file_stats(target)
    except OutboxFileError as exc:
        fail(str(exc), EXIT_REFUSED)


@outbox_app.command("export")
def outbox_export(
    file: Annotated[Path, typer.Argument(help="Where to write JSON lines ('-' for stdout).")],
    config: ConfigOption = None,
    db: Annotated[
        Path | None, typer.Option("--db", help="Outbox file (default: from the config).")
    ] = None,
) -> None:
    """Every entry waiting in the outbox as JSON lines (works with the agent stopped).

    The SQLite file is opened read-only."""
    from cityedge.gateway.diagnostics.outbox_file import OutboxFileError, export

    source = db or load(config).config.outbox_path
    if not source.is_file():
        fail(f"{source}: no such file (is this the agent's outbox? see outbox.path)", EXIT_REFUSED)
    if str(file) == "-":
        try:
            export(source, sys.stdout)
        except OutboxFileError as exc:
            fail(str(exc), EXIT_REFUSED)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    errors = console()
    errors.stderr = True
    try:
        with (
            file.open("w", encoding="utf-8") as out,
            Progress(
                TextColumn("exporting"),
                BarColumn(),
                MofNCompleteColumn(),
                console=errors,
                transient=True,
            ) as progress,
        ):
            task = progress.add_task("export", total=None)
            count = export(
                source, out, lambda done, total: progress.update(task, completed=done, total=total)
            )
    except OutboxFileError as exc:
        fail(str(exc), EXIT_REFUSED)
    except OSError as exc:
        fail(f"cannot write {file}: {exc.strerror}")
    typer.echo(f"exported {count} entries from {source} to {file}")


# --- diagnostics -------------------------------------------------------------------------


def check(
    config: ConfigOption = None,
    socket: SocketOption = None,
    as_json: JsonFlag = False,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Run only these groups (repeatable).")
    ] = None,
    skip: Annotated[
        list[str] | None, typer.Option("--skip", help="Leave these groups out (repeatable).")
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds for each network step and device read.", min=0.1)
    ] = 5.0,
    disk_warn: Annotated[
        float, typer.Option(help="Warn below this % free on the state dir.", min=0, max=100)
    ] = 10.0,
    disk_fail: Annotated[
        float, typer.Option(help="Fail below this % free on the state dir.", min=0, max=100)
    ] = 2.0,
    record: Annotated[bool, typer.Option(help="Keep the result for the maintenance page.")] = True,
) -> None:
    """On-device diagnostics, agent running or not: ✔ / ⚠ / ✘ with a remedy each.

    Groups: config keys clock disk outbox broker certificates serial modbus lorawan ble.
    Exit status: 0 all ok, 1 a warning, 2 a failure."""
    from cityedge.gateway.diagnostics.context import CheckContext
    from cityedge.gateway.diagnostics.runner import UnknownGroup, run_checks, selected
    from cityedge.sdk.checks import worst

    try:
        groups = selected(only or (), skip or ())
    except UnknownGroup as exc:
        fail(str(exc))
    quiet_logs()
    ctx = CheckContext(
        config_path(config),
        disk_warn=disk_warn / 100,
        disk_fail=disk_fail / 100,
        network_timeout=timeout,
        device_timeout=timeout,
        socket=socket,
    )
    results = asyncio.run(run_checks(ctx, groups))
    if record:
        _record(ctx, results)
    status = worst(results)
    if as_json:
        print_json({"status": status.label, "results": [r.to_json() for r in results]})
        raise typer.Exit(int(status))
    out = console()
    colours = {"ok": "green", "warn": "yellow", "fail": "red"}
    for r in results:
        colour = colours[r.status.label]
        out.print(f"[{colour}]{r.status.mark}[/] [bold]{r.name}[/]  {r.detail}", overflow="fold")
        if r.remedy and r.status.label != "ok":
            out.print(f"    → {r.remedy}", style="dim", overflow="fold")
    counts = {s: sum(1 for r in results if r.status.label == s) for s in ("ok", "warn", "fail")}
    out.print(f"{counts['ok']} ok, {counts['warn']} warning(s), {counts['fail']} failure(s)")
    raise typer.Exit(int(status))


def _record(ctx: Any, results: list[Any]) -> None:
    """Best effort: to the running agent, else to the state dir if we may write there."""
    from cityedge.gateway.control.protocol import ControlError
    from cityedge.gateway.diagnostics import record

    data = {"ts": time.time(), "results": [r.to_json() for r in results]}
    agent = asyncio.run(ctx.running_agent()) if ctx.loaded or ctx.socket else None
    if agent is not None:
        try:
            agent.call("check.record", **data)
            return
        except ControlError:
            pass
    if ctx.loaded is not None:
        path = ctx.loaded.config.gateway.state_dir / record.FILE_NAME
        checked = record.CheckRecord.from_json({**data, "user": _user()})
        # a technician without write access to the state dir: nothing to keep
        with contextlib.suppress(OSError):
            record.save(path, checked)


def _user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"


def support_bundle(
    config: ConfigOption = None,
    socket: SocketOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Archive to write (.tar.gz).")
    ] = None,
    checks: Annotated[bool, typer.Option(help="Run the checks and include them.")] = True,
    log_file: Annotated[
        Path | None, typer.Option(help="Log file to include when journald has none.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per network step.", min=0.1)] = 5.0,
) -> None:
    """One .tar.gz for the developers: versions, redacted config, logs, checks, health.

    Never a private key or a password: key files and the password file are not read."""
    from cityedge.gateway.diagnostics.bundle import collect, default_name
    from cityedge.gateway.diagnostics.context import CheckContext

    quiet_logs()
    ctx = CheckContext(
        config_path(config), network_timeout=timeout, device_timeout=timeout, socket=socket
    )
    bundle = asyncio.run(collect(ctx, checks=checks, log_file=log_file))
    target = output or Path(default_name(ctx.config.gateway.id if ctx.config else None))
    try:
        bundle.write(target)
    except OSError as exc:
        fail(f"cannot write {target}: {exc.strerror}")
    typer.echo(f"wrote {target} ({len(bundle.members)} files, {size(target.stat().st_size)})")
    for problem in bundle.problems:
        typer.echo(f"  note: {problem}")


# --- mounting ------------------------------------------------------------------------


def register(parent: typer.Typer) -> None:
    """Add these commands to the `cityedge` app."""
    parent.command("status")(status)
    parent.command("devices")(devices)
    parent.command("read")(read)
    parent.command("write")(write)
    parent.add_typer(outbox_app, name="outbox")
    parent.command("check")(check)
    parent.command("support-bundle")(support_bundle)


register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
