"""`cityedge wipe`: decommission a gateway — erase its outbox, keys and state.

Key files are overwritten before they are unlinked (on flash this is best effort:
wear levelling may keep old blocks; the keys are revoked at the command post too,
see docs/security.md). The config file itself is left alone: it holds no secret.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cityedge.gateway.config import ConfigError, load_config

SECRET_SUFFIXES = (".key", ".pem")
SECRET_WORDS = ("key", "joins")  # lorawan-<driver>-joins.db holds OTAA session keys


def _overwrite(path: Path) -> None:
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())


def erase(targets: list[Path]) -> list[Path]:
    """Remove every file under `targets` (files or folders); returns what was removed."""
    removed: list[Path] = []
    files: list[Path] = []
    for target in targets:
        if target.is_symlink() or target.is_file() or target.is_socket():
            files.append(target)
        elif target.is_dir():
            files += [p for p in sorted(target.rglob("*")) if not p.is_dir() or p.is_symlink()]
    for path in files:
        if (
            path.is_file()
            and not path.is_symlink()
            and (path.suffix in SECRET_SUFFIXES or any(w in path.name for w in SECRET_WORDS))
        ):
            _overwrite(path)
        path.unlink(missing_ok=True)
        removed.append(path)
    for target in targets:
        if target.is_dir():
            for folder in sorted(target.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if folder.is_dir():
                    folder.rmdir()
    return removed


def wipe(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Agent config file.", envvar="CITYEDGE_CONFIG")
    ] = Path("/etc/cityedge/agent.toml"),
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase the outbox, keys, trust store, replay cache and all state (decommissioning)."""
    try:
        cfg = load_config(config).config
    except ConfigError as err:
        typer.echo(err.render(), err=True)
        raise typer.Exit(2) from None
    targets = [
        cfg.gateway.state_dir,
        cfg.signing_key_path,
        cfg.outbox_path,
        cfg.outbox_path.with_name(cfg.outbox_path.name + "-wal"),
        cfg.outbox_path.with_name(cfg.outbox_path.name + "-shm"),
        cfg.control_socket_path,
    ]
    present = [t for t in dict.fromkeys(targets) if t.exists() or t.is_symlink()]
    if cfg.control_socket_path.exists():
        typer.echo("warning: the agent may be running; stop it first (systemctl stop cityedge)",
                   err=True)  # fmt: skip
    if not present:
        typer.echo("nothing to wipe")
        return
    if not yes:
        typer.echo("This erases, for good:")
        for target in present:
            typer.echo(f"  {target}")
        if not typer.confirm("Wipe this gateway?"):
            raise typer.Exit(1)
    removed = erase(present)
    typer.echo(f"wiped: {len(removed)} file(s) removed; keys overwritten first")
