"""`cityedge check` and `cityedge support-bundle`: diagnostics, agent running or not."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cityedge.gateway.cli.common import (
    ConfigOption,
    JsonFlag,
    SocketOption,
    config_path,
    console,
    fail,
    print_json,
    quiet_logs,
    size,
)


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

    Groups: agent config keys clock disk outbox broker certificates serial modbus lorawan ble.
    Exit status: 0 all ok, 1 a warning or a failure (`--json` says which), 2 bad options."""
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
        raise typer.Exit(_exit_code(status))
    from rich.markup import escape

    out = console()
    colours = {"ok": "green", "warn": "yellow", "fail": "red"}
    # Each result and remedy is one line, never broken by us: the terminal wraps it
    # for the eye, and a path or a command copied from it stays whole.
    for r in results:
        colour = colours[r.status.label]
        line = f"[{colour}]{r.status.mark}[/] [bold]{r.name}[/]  {escape(r.detail)}"
        out.print(line, soft_wrap=True)
        if r.remedy and r.status.label != "ok":
            out.print(f"    → {escape(r.remedy)}", style="dim", soft_wrap=True)
    counts = {s: sum(1 for r in results if r.status.label == s) for s in ("ok", "warn", "fail")}
    out.print(f"{counts['ok']} ok, {counts['warn']} warning(s), {counts['fail']} failure(s)")
    raise typer.Exit(_exit_code(status))


def _exit_code(status: Any) -> int:
    from cityedge.sdk.checks import Status
    from cityedge.sdk.exits import ExitCode

    return ExitCode.OK if status is Status.OK else ExitCode.PROBLEM


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
