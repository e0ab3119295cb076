"""What the command post's ingest commands share: their exit codes, a usage error, the
`--trust` / `--trust-dir` options read as one list, and the store and verifier they make
of them, and a store opened for one command. `ingest/cli.py`, `ingest/rejected_cli.py` and
`ingest/keys_cli.py` use it (none imports another's module for it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from cityedge.central.ingest.store.base import Store
    from cityedge.central.verifier import Verifier

from cityedge.sdk.exits import ExitCode

# the one exit-code table (sdk/exits.py, docs/cli.md), under the names ingest uses
EXIT_OK = ExitCode.OK
EXIT_REFUSED = ExitCode.PROBLEM  # a replay left messages refused
EXIT_USAGE = ExitCode.BAD_INPUT
EXIT_ENGINE = ExitCode.NO_BROKER  # the engine (broker, queue) or the store cannot be reached

DEFAULT_STORE = "sqlite:cityedge-central.db"
# `--store` of the commands that only read or mend the store (ingest documents its own)
StoreOption = Annotated[
    str,
    typer.Option("--store", envvar="CITYEDGE_INGEST_STORE", help="As for ingest."),
]


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


def trusted_store(specs: list[str], store_url: str, prefix: str) -> tuple[Store, Verifier]:
    """The store a URL names (not yet opened) and a verifier trusting `specs`; a bad key
    or URL is a usage error, raised as the exit."""
    from cityedge.central.ingest.store.select import open_store
    from cityedge.central.trust import load_gateway_trust
    from cityedge.central.verifier import Verifier
    from cityedge.protocol.keys import KeyFileError

    try:
        gateways = load_gateway_trust(specs)
        store = open_store(store_url)
    except (KeyFileError, ValueError) as err:
        raise fail(str(err)) from None
    return store, Verifier(gateways.keys, bindings=gateways.bindings, prefix=prefix)


@asynccontextmanager
async def opened_store(url: str) -> AsyncIterator[Store]:
    """The store a URL names, open for the block and closed after; a bad URL (exit 2) or a
    store that cannot be opened or used (exit 4) ends the command with one line."""
    from cityedge.central.ingest.store.base import StoreError
    from cityedge.central.ingest.store.select import open_store

    try:
        store = open_store(url)
    except ValueError as err:
        raise fail(str(err)) from None
    try:
        await store.open()
        yield store
    except StoreError as err:
        raise fail(str(err), EXIT_ENGINE) from None
    finally:
        await store.close()
