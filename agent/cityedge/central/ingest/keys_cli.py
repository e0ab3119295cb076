"""`cityedge central keys list` and `cityedge central keys retire`: the gateway keys the
workers share through the store, and the retirement of one (docs/command-post.md,
"Retiring a key").

Exit status of `list`: 0 shown; 2 bad arguments; 4 the store cannot be used.
Exit status of `retire`: 0 retired (or retired already); 1 refused: no such key in the
store, or the gateway's last key still trusted without --force; 2 bad arguments (a key
id that is not 16 hex digits); 4 the store cannot be used.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cityedge.central.ingest.options import (
    DEFAULT_STORE,
    EXIT_OK,
    EXIT_REFUSED,
    StoreOption,
    fail,
    opened_store,
)
from cityedge.protocol.keys import KEY_ID_PATTERN

if TYPE_CHECKING:
    from cityedge.central.ingest.store.base import Binding, Retire

app = typer.Typer(
    help="Gateway keys in the store: list them, retire one (a leaked or rotated-away key).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

FORCE_HELP = ("Retire the gateway's last trusted key too: all its messages are refused "
              "until a new key is enrolled.")  # fmt: skip


@app.command("list")
def list_cli(
    store: StoreOption = DEFAULT_STORE,
    as_json: Annotated[bool, typer.Option("--json", help="Print the keys as JSON.")] = False,
) -> None:
    """Every key bound to a gateway: how it came (given or first seen, or a rotation and
    the key that vouched for it), when it was bound and, if retired, when and why."""
    keys = asyncio.run(_keys(store))
    if as_json:
        typer.echo(json.dumps([_as_json(k) for k in keys]))
    elif not keys:
        typer.echo("no keys bound")
    else:
        for line in table(keys):
            typer.echo(line)


@app.command("retire")
def retire_cli(
    key_id: Annotated[str, typer.Argument(metavar="KID", help="The key id (16 hex digits).")],
    store: StoreOption = DEFAULT_STORE,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why, kept with the key (e.g. 'leaked').")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
) -> None:
    """Stop trusting a gateway key in every worker, from its next batch on: messages it
    signs are refused `unknown-key` (retired-key) and kept. It cannot be undone."""
    if not KEY_ID_PATTERN.match(key_id):
        raise fail(f"key id {key_id!r}: expected 16 hex digits (see `central keys list`)")
    done, binding = asyncio.run(_retire(store, key_id, reason, force))
    from cityedge.central.ingest.store.base import Retire

    if binding is None or done is Retire.UNKNOWN:
        raise fail(f"no key {key_id} in the store (see `central keys list`)", EXIT_REFUSED)
    of = f"key {key_id} of {binding.gateway}"
    if done is Retire.LAST:
        raise fail(f"{of} is its last trusted key: retiring it refuses all its messages; "
                   "enrol its new key first, or give --force", EXIT_REFUSED)  # fmt: skip
    if done is Retire.ALREADY:
        typer.echo(f"{of} was already retired at {_when(binding.retired)}{_why(binding)}")
        raise typer.Exit(EXIT_OK)
    typer.echo(f"retired {of} at {_when(binding.retired)}{_why(binding)}; every worker "
               "refuses it from its next batch")  # fmt: skip


async def _keys(url: str) -> list[Binding]:
    async with opened_store(url) as store:
        return await store.keys()


async def _retire(url: str, key_id: str, reason: str | None,
                  force: bool) -> tuple[Retire, Binding | None]:  # fmt: skip
    async with opened_store(url) as store:
        return await store.retire(key_id, reason, force)


def table(keys: list[Binding]) -> list[str]:
    """Lines within 80 columns for gateway names up to 14 characters: a retired key has
    a second, indented line saying when and why."""
    width = max(len("gateway"), *(len(k.gateway) for k in keys))
    lines = [f"{'key id':16}  {'gateway':{width}}  {'bound (UTC)':16}  how"]
    for k in keys:
        lines.append(f"{k.key_id:16}  {k.gateway:{width}}  {_when(k.bound):16}  {_how(k)}")
        if k.retired is not None:
            lines.append(f"{'':16}  retired {_when(k.retired)}{_why(k)}")
    return lines


def _how(k: Binding) -> str:
    return "given / first seen" if k.vouched_by is None else f"vouched by {k.vouched_by}"


def _when(ts: float | None) -> str:
    return "-" if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _why(k: Binding) -> str:
    return f" ({k.retired_reason})" if k.retired_reason else ""


def _iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


def _as_json(k: Binding) -> dict[str, Any]:
    return {
        "key_id": k.key_id,
        "gateway": k.gateway,
        "how": "given" if k.vouched_by is None else "rotation",
        "vouched_by": k.vouched_by,
        "bound": _iso(k.bound),
        "retired": _iso(k.retired),
        "retired_reason": k.retired_reason,
    }
