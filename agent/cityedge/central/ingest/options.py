"""What the command post's ingest commands share: their exit codes, a usage error, and
the `--trust` / `--trust-dir` options read as one list. Both `ingest/cli.py` and
`ingest/rejected_cli.py` use it (neither imports the other's module for it)."""

from __future__ import annotations

from pathlib import Path

import typer

from cityedge.sdk.exits import ExitCode

# the one exit-code table (sdk/exits.py, docs/cli.md), under the names ingest uses
EXIT_OK = ExitCode.OK
EXIT_REFUSED = ExitCode.PROBLEM  # a replay left messages refused
EXIT_USAGE = ExitCode.BAD_INPUT
EXIT_ENGINE = ExitCode.NO_BROKER  # the engine (broker, queue) or the store cannot be reached


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """A one-line error on stderr, and the exit to raise."""
    typer.echo(f"cityedge: {message}", err=True)
    return typer.Exit(code)


def trust_specs(trust: list[str], trust_dir: Path | None) -> list[str]:
    """`--trust` items and a `--trust-dir`'s GATEWAY.pub files as one list (at least one)."""
    if trust_dir is not None:
        if not trust_dir.is_dir():
            raise fail(f"--trust-dir {trust_dir}: not a directory")
        trust = [*trust, *(f"{p.stem}={p}" for p in sorted(trust_dir.glob("*.pub")))]
    if not trust:
        raise fail("give gateway keys with --trust (file, ed25519:<hex> or GW=KEY) or --trust-dir")
    return trust
