"""`cityedge central rejected list` and `cityedge central rejected replay`: what ingest
refused, and the replay of what an enrolment cured (docs/command-post.md).

Exit status of `list`: 0 shown; 2 bad arguments; 4 the store cannot be read.
Exit status of `replay`: 0 every kept message replayed (or none waiting); 1 some are
still refused (each reason named); 2 bad arguments; 4 the store cannot be used.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cityedge.central.ingest.options import (
    DEFAULT_STORE,
    EXIT_ENGINE,
    EXIT_OK,
    EXIT_REFUSED,
    StoreOption,
    opened_store,
    trust_specs,
    trusted_store,
)
from cityedge.protocol.topics import DEFAULT_PREFIX

if TYPE_CHECKING:
    from cityedge.central.ingest.replay import ReplayReport
    from cityedge.central.ingest.store.base import RejectedCount

PROGRESS_EVERY = 2.0  # seconds between progress lines (and one at the end)

app = typer.Typer(
    help="Messages ingest refused: count them, replay those an enrolment cured.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command("list")
def list_cli(
    store: StoreOption = DEFAULT_STORE,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Count refused messages by reason and topic: waiting, kept whole (replayable once
    the key is trusted) and already replayed."""
    counts = asyncio.run(_counts(store))
    if as_json:
        typer.echo(json.dumps([
            {"reason": c.reason, "topic": c.topic, "waiting": c.count, "kept": c.kept,
             "replayed": c.replayed} for c in counts
        ]))  # fmt: skip
        return
    if not counts:
        typer.echo("no rejected messages")
        return
    typer.echo("reason\twaiting\tkept\treplayed\ttopic")
    for c in counts:
        typer.echo(f"{c.reason}\t{c.count}\t{c.kept}\t{c.replayed}\t{c.topic}")


@app.command("replay")
def replay_cli(
    trust: Annotated[
        list[str],
        typer.Option("--trust", "-t", help="A gateway public key, as for ingest. Repeat."),
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
    trust_dir: Annotated[
        Path | None, typer.Option("--trust-dir", help="A directory of GATEWAY.pub files.")
    ] = None,
    store: StoreOption = DEFAULT_STORE,
    prefix: Annotated[str, typer.Option("--prefix", help="Topic prefix.")] = DEFAULT_PREFIX,
    chunk: Annotated[
        int, typer.Option("--chunk", min=1, help="Rows per database transaction.")
    ] = 500,
) -> None:
    """Verify again the messages refused for an unknown key, with the keys trusted now
    (the same options as the workers, and the bindings and rotations in the store), and
    store those that pass, once each; then say what is still refused and why."""
    specs = trust_specs(trust, trust_dir)
    raise typer.Exit(asyncio.run(_replay(store, specs, prefix, chunk)))


async def _counts(url: str) -> list[RejectedCount]:
    async with opened_store(url) as store:
        return await store.rejections()


async def _replay(url: str, specs: list[str], prefix: str, chunk: int) -> int:
    from cityedge.central.ingest.decode import Decoder
    from cityedge.central.ingest.replay import replay
    from cityedge.central.ingest.store.base import StoreError
    from cityedge.central.ingest.trust import SharedTrust
    from cityedge.sdk.logs import configure_logging

    configure_logging("warning", "json")
    store, verifier = trusted_store(specs, url, prefix)
    shared = SharedTrust(Decoder(verifier), store)
    shown = [0.0]

    def progress(report: ReplayReport) -> None:
        now = time.monotonic()
        if now - shown[0] >= PROGRESS_EVERY or report.seen >= report.waiting:
            shown[0] = now
            refused = sum(report.refused.values())
            typer.echo(f"replay: {report.seen}/{report.waiting} rows, {report.replayed} "
                       f"replayed, {refused} still refused", err=True)  # fmt: skip

    try:
        await store.open()
        await shared.seed()
        report = await replay(store, shared, chunk=chunk, progress=progress)
    except StoreError as err:
        typer.echo(f"cityedge: {err}", err=True)
        return EXIT_ENGINE
    finally:
        await store.close()
    w = report.written
    typer.echo(f"replayed {report.replayed} of {report.waiting} kept messages: {w.messages} "
               f"stored ({w.readings} readings), {w.duplicates} were there already; "
               f"{w.closed} missing numbers filled")  # fmt: skip
    for reason, count in report.refused.most_common():
        typer.echo(f"still refused: {count} {reason} (e.g. {report.why[reason]})")
    return EXIT_REFUSED if report.refused else EXIT_OK
