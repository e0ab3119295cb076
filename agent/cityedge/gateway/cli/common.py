"""What every technician command shares: options, exit codes, the control socket
client, and how times, sizes and values read on a terminal."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from cityedge.sdk.exits import ExitCode

if TYPE_CHECKING:
    from rich.console import Console

    from cityedge.gateway.config import LoadedConfig
    from cityedge.gateway.control.client import ControlClient
    from cityedge.gateway.control.status import Shape

    S = TypeVar("S", bound=Shape)

DEFAULT_CONFIG = Path("/etc/cityedge/agent.toml")
# The table every `cityedge` command shares (docs/cli.md).
EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = (
    ExitCode.PROBLEM,
    ExitCode.BAD_INPUT,
    ExitCode.NO_ANSWER,
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
VERSIONS = "do the CLI and the agent have the same version?"
STATE_STYLE = {"up": "green", "degraded": "yellow", "down": "red", "unknown": "dim"}


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.echo(f"cityedge: {message}", err=True)
    raise typer.Exit(code)


def config_path(config: Path | None) -> Path:
    return config or DEFAULT_CONFIG


def load(config: Path | None) -> LoadedConfig:
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


def shaped(shape: type[S], data: object) -> S:
    """The agent's answer as the read-model's dataclass; an answer that does not fit
    (an agent of another version) is said plainly, not a traceback."""
    from cityedge.gateway.control.codec import ShapeError

    try:
        return shape.from_json(data)
    except ShapeError as exc:
        fail(f"unexpected answer from the agent ({exc}); {VERSIONS}", EXIT_REFUSED)


def shaped_each(shape: type[S], data: object) -> list[S]:
    """`shaped` for an answer that is a list of them."""
    if not isinstance(data, list):
        fail(f"unexpected answer from the agent (not a list); {VERSIONS}", EXIT_REFUSED)
    return [shaped(shape, item) for item in data]


def console() -> Console:
    from rich.console import Console

    # Not on a terminal: no hard wrapping at 80 columns, so lines stay greppable.
    return Console(highlight=False, soft_wrap=not sys.stdout.isatty())


def on_terminal() -> bool:
    return sys.stdout.isatty()


def print_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    right: Collection[str] = (),
    styles: Sequence[Sequence[str | None]] | None = None,
) -> None:
    """Every cell in full: on a terminal a table that wraps (never `lamppost-…`), else
    one line per row with tab-separated cells and a header line (`cut -f1` works)."""
    if not on_terminal():
        if title:
            typer.echo(f"# {title}")
        typer.echo("\t".join(c.lower().replace(" ", "_") for c in columns))
        for row in rows:
            typer.echo("\t".join(cell.replace("\t", " ") or "-" for cell in row))
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold", justify="right" if column in right else "left")
    for i, row in enumerate(rows):
        cells = []
        for j, cell in enumerate(row):
            style = styles[i][j] if styles else None
            cells.append(f"[{style}]{escape(cell)}[/]" if style else escape(cell))
        table.add_row(*cells)
    console().print(table)


def outbox_summary(depth: int, rows: Mapping[str, int] | Mapping[int, int]) -> str:
    """`empty`, or what waits: by priority on disk, and what is not committed yet."""
    if depth == 0:
        return "empty"
    committed = sum(rows.values())
    parts = [f"priority {k}: {v}" for k, v in rows.items()]
    if depth > committed:
        parts.append(f"{depth - committed} not yet on disk")
    return f"{depth} entries waiting ({', '.join(parts)})"


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


def shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
