"""`cityedge central keys list` and `cityedge central keys retire`, run as the operator runs
them, on a SQLite file and on PostgreSQL; and a database made before keys could be
retired, which gets the columns when it is opened."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import asyncpg

from cityedge.central.ingest.decode import Decoded, Decoder
from cityedge.central.ingest.store.select import open_store
from cityedge.central.ingest.trust import SharedTrust
from cityedge.central.verifier import Verifier
from cityedge.protocol.keys import SigningKey
from cityedge.sdk.exits import ExitCode
from tests.central_ingest.helpers import rotated_state
from tests.support.agent_process import cityedge

OLD, NEW, SPARE = (SigningKey.from_seed(bytes([n]) * 32) for n in (61, 62, 63))


async def _rotated(store_url: str) -> None:
    """gw-rot given OLD, then rotated to NEW, as a worker stores it."""
    store = open_store(store_url)
    await store.open()
    try:
        verifier = Verifier({OLD.key_id: OLD.public_key}, bindings={OLD.key_id: "gw-rot"})
        trust = SharedTrust(Decoder(verifier), store)
        await trust.seed()
        (state,) = await trust.decode([rotated_state("gw-rot", OLD, NEW)])
        assert isinstance(state, Decoded)
    finally:
        await store.close()


def keys(store_url: str, *args: str) -> tuple[int, str, str]:
    done = cityedge("central", "keys", *args, "--store", store_url)
    return done.returncode, done.stdout, done.stderr


async def test_keys_list_and_retire_as_the_operator_runs_them(store_url: str) -> None:
    assert keys(store_url, "list") == (0, "no keys bound\n", "")
    await _rotated(store_url)
    code, out, _ = keys(store_url, "list", "--json")
    assert code == 0
    listed = {k["key_id"]: k for k in json.loads(out)}
    assert listed[OLD.key_id] | {"bound": None} == {
        "key_id": OLD.key_id, "gateway": "gw-rot", "how": "given", "vouched_by": None,
        "bound": None, "retired": None, "retired_reason": None,
    }  # fmt: skip
    assert listed[NEW.key_id]["how"] == "rotation"
    assert listed[NEW.key_id]["vouched_by"] == OLD.key_id

    # Refused, nothing changed: a key id that is none, one the store does not hold.
    code, out, err = keys(store_url, "retire", "not-a-key")
    assert (code, out) == (ExitCode.BAD_INPUT, "") and err.count("\n") == 1
    assert "16 hex digits" in err
    code, out, err = keys(store_url, "retire", SPARE.key_id)
    assert (code, out) == (ExitCode.PROBLEM, "")
    assert err == f"cityedge: no key {SPARE.key_id} in the store (see `central keys list`)\n"

    code, out, err = keys(store_url, "retire", OLD.key_id, "--reason", "leaked")
    assert (code, err) == (0, ""), err
    assert out.startswith(f"retired key {OLD.key_id} of gw-rot at ") and "(leaked)" in out
    code, out, _ = keys(store_url, "retire", OLD.key_id)
    assert code == 0 and out.startswith(f"key {OLD.key_id} of gw-rot was already retired at ")

    # NEW is now gw-rot's last trusted key: refused unless forced.
    code, out, err = keys(store_url, "retire", NEW.key_id)
    assert (code, out) == (ExitCode.PROBLEM, "") and err.count("\n") == 1
    assert "last trusted key" in err and "--force" in err
    code, out, _ = keys(store_url, "list")
    assert code == 0 and all(len(line) <= 80 for line in out.splitlines()), out
    lines = out.splitlines()
    assert lines[0].split() == ["key", "id", "gateway", "bound", "(UTC)", "how"]
    old_row = next(i for i, line in enumerate(lines) if line.startswith(OLD.key_id))
    assert lines[old_row].endswith("given / first seen")
    assert lines[old_row + 1].strip().startswith("retired ") and "(leaked)" in lines[old_row + 1]
    assert any(line.startswith(NEW.key_id) and line.endswith(f"vouched by {OLD.key_id}")
               for line in lines)  # fmt: skip
    assert sum("retired" in line for line in lines) == 1  # NEW was not retired

    code, out, _ = keys(store_url, "retire", NEW.key_id, "--force")
    assert code == 0 and out.startswith(f"retired key {NEW.key_id} of gw-rot")
    _, out, _ = keys(store_url, "list", "--json")
    assert all(k["retired"] is not None for k in json.loads(out))


def test_keys_on_a_store_that_cannot_be_used_exit_4(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path / 'no-such-dir' / 'central.db'}"
    for args in (["list"], ["retire", OLD.key_id]):
        code, out, err = keys(url, *args)
        assert (code, out) == (ExitCode.NO_BROKER, "") and err.startswith("cityedge: sqlite ")
        assert err.count("\n") == 1


OLD_KEY_BINDINGS = {
    "sqlite": "CREATE TABLE key_bindings (key_id TEXT PRIMARY KEY, gateway TEXT NOT NULL, "
    "public_key BLOB, vouched_by TEXT, bound REAL NOT NULL)",
    "postgresql": "CREATE TABLE key_bindings (key_id text PRIMARY KEY, gateway text NOT NULL, "
    "public_key bytea, vouched_by text, bound timestamptz NOT NULL DEFAULT now())",
}


async def test_a_database_made_before_retirement_gets_the_columns_when_opened(
    store_url: str,
) -> None:
    """key_bindings as it was created before: its rows stay, the columns are added (by
    each of two stores opened one after the other: the second finds them there)."""
    row = (OLD.key_id, "gw-old", 1_790_000_000.0)
    if store_url.startswith("sqlite:"):
        with sqlite3.connect(store_url.removeprefix("sqlite:")) as db:
            db.execute(OLD_KEY_BINDINGS["sqlite"])
            db.execute("INSERT INTO key_bindings (key_id, gateway, bound) VALUES (?, ?, ?)", row)
    else:
        conn = await asyncpg.connect(store_url)
        try:
            await conn.execute(OLD_KEY_BINDINGS["postgresql"])
            await conn.execute("INSERT INTO key_bindings (key_id, gateway) VALUES ($1, $2)",
                               *row[:2])  # fmt: skip
        finally:
            await conn.close()
    for _ in range(2):
        store = open_store(store_url)
        await store.open()
        try:
            (held,) = await store.keys()
            assert (held.key_id, held.gateway, held.retired) == (OLD.key_id, "gw-old", None)
            assert await store.retirements(0) == (0, [])
        finally:
            await store.close()
    code, out, _ = keys(store_url, "retire", OLD.key_id, "--force")
    assert code == 0, out
    store = open_store(store_url)
    await store.open()
    try:
        count, (retired,) = await store.retirements(0)
        assert (count, retired.key_id, retired.retired_reason) == (1, OLD.key_id, None)
        assert await store.retirements(1) == (1, [])  # nothing new: nothing read
    finally:
        await store.close()


async def test_two_operators_retiring_a_gateways_last_two_keys_at_once_leave_one(
    store_url: str,
) -> None:
    """Each retirement alone would be allowed; together they would leave gw-rot no key:
    the gateway's keys are locked while one is retired, so the second sees the first."""
    await _rotated(store_url)
    stores = [open_store(store_url), open_store(store_url)]
    for store in stores:
        await store.open()
    try:
        done = await asyncio.gather(stores[0].retire(OLD.key_id, None, False),
                                    stores[1].retire(NEW.key_id, None, False))  # fmt: skip
    finally:
        for store in stores:
            await store.close()
    assert sorted(d for d, _ in done) == ["last", "retired"], done
