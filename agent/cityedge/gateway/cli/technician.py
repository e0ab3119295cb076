"""Commands for field technicians and maintenance crews.

    cityedge status | devices | read | write | outbox [export] | check | support-bundle

Most talk to the running agent over its control socket (`--socket PATH`, or
the path from `-c CONFIG`); `check`, `support-bundle` and `outbox` also work
with the agent stopped. Tables on a terminal, `--json` for scripts. Exit
status (sdk/exits.py, docs/cli.md): 0 done, 1 a problem (the agent refused: unknown
device, denied by policy, device error; `check` found a warning or a failure),
2 bad input, 3 agent not reachable.

Mounted into the `cityedge` app by `register(app)`: one entry point, one way
usage errors are told (a line on stderr, see cityedge.cli.app).
"""

from __future__ import annotations

import typer

from cityedge.gateway.cli.diagnose import check, support_bundle
from cityedge.gateway.cli.live import devices, read, status
from cityedge.gateway.cli.outbox import outbox_app
from cityedge.gateway.cli.write import write


def register(parent: typer.Typer) -> None:
    """Add these commands to the `cityedge` app."""
    parent.command("status")(status)
    parent.command("devices")(devices)
    parent.command("read")(read)
    parent.command("write")(write)
    parent.add_typer(outbox_app, name="outbox")
    parent.command("check")(check)
    parent.command("support-bundle")(support_bundle)
