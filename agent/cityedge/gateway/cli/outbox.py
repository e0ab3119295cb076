"""`cityedge outbox [export]`: what waits to go up, from the agent or from the file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cityedge.gateway.cli.common import (
    EXIT_REFUSED,
    ConfigOption,
    JsonFlag,
    SocketOption,
    client,
    console,
    fail,
    load,
    outbox_summary,
    print_json,
    size,
)

outbox_app = typer.Typer(
    help="The outbox: statistics (default), or `export FILE` to JSON lines.",
    add_completion=False,
    pretty_exceptions_enable=False,
)


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

    oldest = "-" if data["oldest_age"] is None else format_duration(data["oldest_age"])
    where = "agent" if data["source"] == "agent" else "file (agent not running)"
    typer.echo(
        f"outbox {data['path']} (from the {where})\n"
        f"  waiting  {outbox_summary(data['depth'], data['rows'])}\n"
        f"  file     {size(data['bytes'])}\n"
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
