"""`cityedge run`: the daemon's own path from argv to the runtime.

Imports neither the CLI toolkit (typer, click, rich) nor the CLI: both the lean
launcher (`cityedge.cli.entry`) and the full CLI's `run` command come here.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn


def lean_daemon_imports() -> None:
    """structlog renders with rich when it can import it; the daemon logs plain lines
    or JSON, so keep rich (and its ~8 MB) out of the process."""
    sys.modules.setdefault("rich", None)  # type: ignore[arg-type]


DAEMON_UMASK = 0o027  # outbox, replay cache, counters: owner and group only, never others


def restrict_umask() -> int:
    """Take away at least group-write and every bit for others from files the agent
    creates, before it creates any (a login shell's 022 would leave the outbox and
    the replay cache world-readable). A stricter umask (systemd's 0077) is kept."""
    previous = os.umask(DAEMON_UMASK)
    os.umask(previous | DAEMON_UMASK)
    return previous | DAEMON_UMASK


class _OneLineParser(argparse.ArgumentParser):
    """A usage mistake is one line and exit status 2, as in every other command."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def run_daemon(argv: list[str]) -> int:
    parser = _OneLineParser(
        prog="cityedge run", description="Run the agent in the foreground (systemd runs this)."
    )
    parser.add_argument(
        "-c", "--config", type=Path,
        default=Path(os.environ.get("CITYEDGE_CONFIG", "/etc/cityedge/agent.toml")),
        help="agent config file (TOML); default $CITYEDGE_CONFIG or /etc/cityedge/agent.toml",
    )  # fmt: skip
    args = parser.parse_args(argv)
    restrict_umask()
    lean_daemon_imports()

    from cityedge.gateway.config import ConfigError
    from cityedge.gateway.runtime import run_agent
    from cityedge.protocol.keys import KeyFileError

    try:
        return run_agent(args.config)
    except ConfigError as err:
        print(err.render(), file=sys.stderr)  # noqa: T201
        return 2
    except KeyFileError as err:
        print(f"cityedge: {err}", file=sys.stderr)  # noqa: T201
        return 2
    except KeyboardInterrupt:
        return 130
