"""The `cityedge` executable.

`cityedge run` — the daemon — takes a lean path that never imports the CLI
toolkit (typer, click, rich): on a 512 MB gateway those would cost the agent
about a quarter of its memory for help screens it never shows. Every other
subcommand goes to the full CLI in `cityedge.cli.app`. The import goes one way:
this launcher knows the CLI and the daemon (`cityedge.cli.daemon`), neither
knows it.
"""

from __future__ import annotations

import sys

from cityedge.cli.daemon import run_daemon


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["run"] and "--help" not in argv and "-h" not in argv:
        sys.exit(run_daemon(argv[1:]))
    from cityedge.cli.app import main as cli_main

    cli_main()
