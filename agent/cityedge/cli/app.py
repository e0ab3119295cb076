"""`cityedge` command line: the agent, its config, keys, the command-post console, the demo.

Every failure a user can cause (a bad file, a bad argument, an unreachable
broker) ends in one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="cityedge",
    help="Field-gateway agent for the city's street equipment.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Check configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="Agent config file (TOML).", envvar="CITYEDGE_CONFIG"),
]


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"cityedge: {message}", err=True)
    return typer.Exit(code)


@app.command()
def run(config: ConfigOption = Path("/etc/cityedge/agent.toml")) -> None:
    """Run the agent in the foreground (systemd runs exactly this)."""
    from cityedge.cli.daemon import run_daemon

    raise typer.Exit(run_daemon(["--config", str(config)]))


@config_app.command("check")
def config_check(path: Annotated[Path, typer.Argument(help="Config file to validate.")]) -> None:
    """Validate a config file; print every problem with its key path."""
    from cityedge.gateway.config import ConfigError, load_config

    try:
        loaded = load_config(path)
    except ConfigError as err:
        typer.echo(err.render(), err=True)
        raise typer.Exit(2) from None
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
        float, typer.Option(help="Stop after this many seconds (0 = until Ctrl-C).")
    ] = 0.0,
) -> None:
    """Run a simulated street: devices, a private broker, the agent and the command-post console."""
    from cityedge.street.demo import DEMO_CONFIG, run_demo

    raise typer.Exit(run_demo(config=config or DEMO_CONFIG, duration=duration))


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
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
