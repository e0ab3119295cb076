"""`cityedge` command line: the agent, its config, keys, the command-post console, the demo.

Every failure a user can cause (a bad file, a bad argument, an unreachable
broker) ends in one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cityedge.sdk.exits import ExitCode

app = typer.Typer(
    name="cityedge",
    help="Field-gateway agent for the city's street equipment.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion [bash|zsh|fish]
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Check configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="Agent config file (TOML).", envvar="CITYEDGE_CONFIG"),
]


def fail(message: str, code: int = ExitCode.BAD_INPUT) -> typer.Exit:
    typer.echo(f"cityedge: {message}", err=True)
    return typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        from cityedge.sdk import __version__

        typer.echo(f"cityedge {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", is_eager=True,
                     callback=_version),
    ] = False,
) -> None:  # fmt: skip
    """Field-gateway agent for the city's street equipment. Exit statuses: docs/cli.md."""


@app.command()
def run(config: ConfigOption = Path("/etc/cityedge/agent.toml")) -> None:
    """Run the agent in the foreground (systemd runs exactly this)."""
    from cityedge.cli.daemon import run_daemon

    raise typer.Exit(run_daemon(["--config", str(config)]))


@config_app.command("check")
def config_check(
    path: Annotated[
        Path | None,
        typer.Argument(help="Config file to validate (default: -c, $CITYEDGE_CONFIG, "
                       "/etc/cityedge/agent.toml).", show_default=False),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Agent config file (TOML).", envvar="CITYEDGE_CONFIG",
                     show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:  # fmt: skip
    """Validate a config exactly as `cityedge run` does; print every problem with its key path.

    Exit status 0 when `run` would accept it (warnings are printed), 2 when not."""
    from cityedge.gateway.config import ConfigError
    from cityedge.gateway.validation import validate_file

    if path is not None and config is not None and path != config:
        raise fail(f"two configs given ({path} and -c {config}): check one at a time")
    path = path or config or Path("/etc/cityedge/agent.toml")
    try:
        checked = validate_file(path)
    except ConfigError as err:
        if as_json:
            _print_json({"path": str(path), "ok": False, "errors": err.problems})
        else:
            typer.echo(err.render(), err=True)
        raise typer.Exit(ExitCode.BAD_INPUT) from None
    if as_json:
        _print_json({"path": str(path), "ok": True, "errors": [],
                     "warnings": checked.warnings, "sha256": checked.loaded.digest})  # fmt: skip
        return
    if checked.warnings:
        typer.echo(checked.render_warnings(), err=True)
    loaded = checked.loaded
    cfg = loaded.config
    devices = sum(len(section.device_names()) for _, section in cfg.driver_sections())
    typer.echo(
        f"{path}: ok — gateway {cfg.gateway.id} at {cfg.gateway.site}, "
        f"{len(cfg.driver_sections())} driver section(s), {devices} device(s), "
        f"sha256 {loaded.digest[:12]}"
    )


@app.command()
def demo(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Demo config (default: config/demo.toml).")
    ] = None,
    duration: Annotated[
        float, typer.Option(help="Stop after this many seconds (0 = until Ctrl-C).", min=0)
    ] = 0.0,
    log: Annotated[
        bool,
        typer.Option("--log", "--verbose", help="Every verified message as a line, not the view."),
    ] = False,
) -> None:
    """Run a simulated street: devices, a private broker, the agent and the command-post console."""
    from cityedge.street.demo import default_demo_config, run_demo

    raise typer.Exit(run_demo(config=config or default_demo_config(), duration=duration, log=log))


def _mount_optional() -> None:
    from cityedge.central import cli as central
    from cityedge.cli import keys
    from cityedge.gateway.cli import technician, wipe

    app.add_typer(keys.app, name="keys")
    app.add_typer(central.app, name="central")
    technician.register(app)
    app.command()(wipe.wipe)


_mount_optional()


def main() -> None:
    """Run the CLI; usage mistakes are one line on stderr, never a box (docs/cli.md)."""
    try:
        code = app(prog_name="cityedge", standalone_mode=False)
    except typer.TyperException as err:  # click's errors, as typer vendors them
        code = _usage_error(err)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("", err=True)
        code = ExitCode.INTERRUPTED
    sys.exit(code if isinstance(code, int) else ExitCode.OK)


def _print_json(data: object) -> None:
    import json

    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _usage_error(err: typer.TyperException) -> int:
    ctx = getattr(err, "ctx", None)
    if type(err).__name__ == "NoArgsIsHelpError" and ctx is not None:
        typer.echo(ctx.get_help())  # `cityedge` or `cityedge keys` alone: the help
        return ExitCode.OK
    where = ctx.command_path if ctx is not None else "cityedge"
    message = err.format_message() if hasattr(err, "format_message") else str(err)
    typer.echo(f"{where}: {message} (see `{where} --help`)", err=True)
    return ExitCode.BAD_INPUT
