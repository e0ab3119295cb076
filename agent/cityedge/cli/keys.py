"""`cityedge keys …`: create a signing key (gateway or command post) and show its public half."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cityedge.central.cli import default_central_key

DEFAULT_GATEWAY_KEY = Path("/var/lib/cityedge/keys/gateway.key")

app = typer.Typer(
    help="Create and show Ed25519 signing keys (a gateway's, or the command post's).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

CentralFlag = Annotated[
    bool, typer.Option("--central", help="A command-post key (signs commands), not a gateway's.")
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Take the gateway key path from this agent config."),
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"cityedge: {message}", err=True)
    return typer.Exit(code)


def _key_path(path: Path | None, central: bool, config: Path | None) -> Path:
    if path is not None:
        return path
    if central:
        return default_central_key()
    if config is None:
        return DEFAULT_GATEWAY_KEY
    from cityedge.gateway.config import ConfigError, load_config
    from cityedge.gateway.credentials import gateway_key_path

    try:
        return gateway_key_path(load_config(config).config.signing_key_path)
    except ConfigError as err:
        typer.echo(err.render(), err=True)
        raise typer.Exit(2) from None


@app.command("init")
def init(
    central: CentralFlag = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help=f"Where to write the key (default: {DEFAULT_GATEWAY_KEY}, or "
            "~/.config/cityedge/command-post.key with --central).",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing key (its id stops being valid).")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Create a key, mode 0600, and print its key id and public key for enrolment."""
    from cityedge.protocol.key_files import create_key
    from cityedge.protocol.keys import KeyFileError

    path = _key_path(out, central, config)
    try:
        key = create_key(path, overwrite=force)
    except KeyFileError as err:
        raise _fail(str(err)) from None
    role = "command-post" if central else "gateway"
    typer.echo(f"created {role} key {path} (mode 0600)")
    typer.echo(f"key id:     {key.key_id}")
    typer.echo(f"public key: {key.public_text()}")
    if central:
        typer.echo("trust it on each gateway, in agent.toml:")
        typer.echo(f'  [keys]\n  trust = ["{key.public_text()}"]')
    else:
        typer.echo("enrol it at the command post, bound to this gateway's id:")
        typer.echo(f"  cityedge central watch --trust <gateway-id>={key.public_text()}")


@app.command("show")
def show(
    path: Annotated[
        Path | None,
        typer.Argument(help="A private key file, or a public key (file or text)."),
    ] = None,
    central: CentralFlag = False,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Print a key's id and public key (never the private key)."""
    from cityedge.protocol.key_files import load_public_key, load_signing_key
    from cityedge.protocol.keys import KeyFileError, public_text

    target = _key_path(path, central, config)
    try:
        if _holds_private_key(target):
            key = load_signing_key(target)
            if as_json:
                _json({"file": str(target), "key_id": key.key_id, "public": key.public_text()})
                return
            typer.echo(f"private key file: {target}")
            typer.echo(f"key id:     {key.key_id}")
            typer.echo(f"public key: {key.public_text()}")
            return
        public = load_public_key(str(target))
    except KeyFileError as err:
        raise _fail(str(err)) from None
    if as_json:
        _json({"file": None, "key_id": public.key_id, "public": public_text(public)})
        return
    typer.echo(f"public key of: {target!s}")
    typer.echo(f"key id:     {public.key_id}")
    typer.echo(f"public key: {public_text(public)}")


@app.command("rotate")
def rotate(
    config: Annotated[
        Path,
        typer.Option(
            "--config",
            "-c",
            envvar="CITYEDGE_CONFIG",
            help="The agent config (gateway id, key path, state dir).",
        ),
    ] = Path("/etc/cityedge/agent.toml"),
) -> None:
    """Replace this gateway's key with a new one, announced by the old one.

    The agent carries the announcement in its retained state message from its
    next start on (restart it: `systemctl restart cityedge`); the command post
    then trusts the new key for this gateway without an enrolment of its own.
    The key rotated is the one the agent loads: the configured file, or where the
    shipped unit keeps it (/etc/cityedge/credentials/gateway.key).
    """
    from cityedge.gateway.config import ConfigError, load_config
    from cityedge.gateway.credentials import gateway_key_path
    from cityedge.protocol.keys import KeyFileError
    from cityedge.protocol.trust_store import rotate_gateway_key

    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / "gateway.key").is_file():
        raise _fail(
            "the gateway key is a systemd credential here; rotate it where it is provisioned "
            "(LoadCredential= source) with `cityedge keys rotate -c` run outside the service"
        )
    try:
        cfg = load_config(config).config
    except ConfigError as err:
        typer.echo(err.render(), err=True)
        raise typer.Exit(2) from None
    try:
        key_path = gateway_key_path(cfg.signing_key_path)
        old_id, new = rotate_gateway_key(key_path, cfg.gateway.state_dir, cfg.gateway.id)
    except (KeyFileError, OSError) as err:
        raise _fail(str(err)) from None
    typer.echo(f"rotated gateway key {key_path} (mode 0600)")
    typer.echo(f"old key id: {old_id}")
    typer.echo(f"new key id: {new.key_id}")
    typer.echo(f"public key: {new.public_text()}")
    typer.echo("restart the agent: it announces the new key, signed by the old one")


def _json(data: object) -> None:
    import json

    typer.echo(json.dumps(data, indent=2))


def _holds_private_key(path: Path) -> bool:
    from cityedge.protocol.key_files import MAX_KEY_FILE_BYTES
    from cityedge.protocol.keys import looks_like_key_text

    if looks_like_key_text(str(path)) and not path.is_file():
        return False
    try:
        with path.open("rb") as f:
            return b"PRIVATE KEY" in f.read(MAX_KEY_FILE_BYTES)
    except (OSError, ValueError):
        return True  # let the private-key loader explain what is wrong


if __name__ == "__main__":
    app()
