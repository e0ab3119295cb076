"""`cityedge central …`: the command post's console — watch verified telemetry, send commands.

Exit status of `watch`:  0 every message verified (and --count reached, if given);
1 at least one message rejected; 2 bad arguments (URL, key); 3 --count not reached
before --timeout; 4 broker unreachable or lost.
Exit status of `send`:   0 the gateway answered "done"; 1 it answered another code;
2 bad arguments; 3 no verified result in time (or site unknown); 4 broker trouble.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cityedge.protocol.topics import DEFAULT_PREFIX, watch_filter
from cityedge.sdk.exits import ExitCode

if TYPE_CHECKING:
    from cityedge.central.link import BrokerUrl
    from cityedge.central.verifier import Verdict, Verifier
    from cityedge.protocol.keys import SigningKey
    from cityedge.sdk.model import Command

# The table every command shares (docs/cli.md).
EXIT_OK = ExitCode.OK
EXIT_REJECTED = ExitCode.PROBLEM  # watch: something was rejected; send: the result was not "done"
EXIT_USAGE = ExitCode.BAD_INPUT
EXIT_INCOMPLETE = ExitCode.NO_ANSWER  # watch: --count not reached in --timeout; send: no result
EXIT_BROKER = ExitCode.NO_BROKER


def default_central_key() -> Path:
    """Where the command post keeps its signing key unless `--key` says otherwise."""
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "cityedge" / "command-post.key"


app = typer.Typer(
    help="The command post's console: verify what gateways send, sign and send commands.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

BrokerOption = Annotated[
    str,
    typer.Option(
        "--broker", "-b", envvar="CITYEDGE_BROKER",
        help="mqtt://host[:port] or mqtts://host[:port] (user name: mqtt://user@host; "
        "password from CITYEDGE_MQTT_PASSWORD).",
    ),
]  # fmt: skip
TrustOption = Annotated[
    list[str],
    typer.Option(
        "--trust", "-t",
        help="A gateway public key to trust: a file, 'ed25519:<hex>', or GATEWAY=KEY to bind "
        "the key to its gateway id. Repeat for each gateway.",
    ),
]  # fmt: skip
PrefixOption = Annotated[str, typer.Option("--prefix", help="Topic prefix.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]
CaOption = Annotated[
    Path | None, typer.Option("--ca-file", help="CA certificates for mqtts:// (PEM).")
]
LogOption = Annotated[
    str, typer.Option("--log-level", help="debug, info, warning or error (on stderr).")
]


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    typer.echo(f"cityedge: {message}", err=True)
    return typer.Exit(code)


def _quiet_logs(level: str) -> None:
    from cityedge.sdk.logs import configure_logging

    if level not in ("debug", "info", "warning", "error"):
        raise _fail(f"--log-level {level!r}: expected debug, info, warning or error")
    configure_logging(level, "console")  # stderr: stdout is for verdicts


def _verifier(trust: list[str], command_keys: list[str], prefix: str) -> Verifier:
    from cityedge.central.trust import load_gateway_trust
    from cityedge.central.verifier import Verifier
    from cityedge.protocol.key_files import load_trust
    from cityedge.protocol.keys import KeyFileError

    if not trust:
        raise _fail("give at least one gateway key with --trust (file, ed25519:<hex> or GW=KEY)")
    try:
        gateways = load_gateway_trust(trust)
        commands = load_trust(command_keys) if command_keys else None
    except KeyFileError as err:
        raise _fail(str(err)) from None
    return Verifier(gateways.keys, bindings=gateways.bindings, command_keys=commands, prefix=prefix)


def _broker(url: str) -> BrokerUrl:
    from cityedge.central.link import BrokerUrlError, parse_broker_url

    try:
        return parse_broker_url(url)
    except BrokerUrlError as err:
        raise _fail(str(err)) from None


# --- watch ---------------------------------------------------------------------------------


@app.command("watch")
def watch_cli(
    broker: BrokerOption = "mqtt://127.0.0.1:1883",
    trust: TrustOption = [],  # noqa: B006 - typer reads the default, never mutates it
    command_key: Annotated[
        list[str],
        typer.Option(
            "--command-key",
            help="A command-post public key, to verify commands seen on the bus too.",
        ),
    ] = [],  # noqa: B006
    prefix: PrefixOption = DEFAULT_PREFIX,
    json_out: JsonFlag = False,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Stop after N messages.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=0.001, help="Stop after S seconds.")
    ] = None,
    ca_file: CaOption = None,
    log_level: LogOption = "error",
    gap_grace: Annotated[
        float,
        typer.Option("--gap-grace", min=0, help="Report a hole in the sequence only once it "
                     "stayed open this many seconds (a message overtaken in flight fills it)."),
    ] = 0.0,
) -> None:  # fmt: skip
    """Verify and print every message under PREFIX/+/+/# (readings, events, state, results).

    Prints why a message is refused. Exit status: 0 all verified (and --count reached), 1 something was rejected, 2 bad arguments, 3 --count not reached before --timeout, 4 broker unreachable or lost.
    """  # noqa: E501
    _quiet_logs(log_level)
    verifier = _verifier(trust, command_key, prefix)
    url = _broker(broker)
    code = asyncio.run(_watch(url, verifier, prefix, json_out, count, timeout, ca_file, gap_grace))
    raise typer.Exit(code)


async def _watch(
    url: BrokerUrl,
    verifier: Verifier,
    prefix: str,
    json_out: bool,
    count: int | None,
    stop_after: float | None,
    ca_file: Path | None,
    gap_grace: float = 0.0,
) -> int:
    from cityedge.central.console import json_lines, lines
    from cityedge.central.link import BrokerError
    from cityedge.central.verifier import Outcome
    from cityedge.central.watch import watch

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    timed_out = False

    def expire() -> None:
        nonlocal timed_out
        timed_out = True
        stop.set()

    if stop_after is not None:
        loop.call_later(stop_after, expire)
    seen: dict[Outcome, int] = dict.fromkeys(Outcome, 0)

    def ready() -> None:
        typer.echo(f"watching {url} {watch_filter(prefix)}", err=True)

    opened: dict[tuple[str, int, int], float] = {}  # hole -> when first seen open
    told: set[tuple[str, int, int]] = set()

    def tell_gaps() -> None:
        """The holes open for longer than the grace, each said once."""
        now = loop.time()
        holes = {(g.gateway, g.first, g.last) for g in verifier.missing()}
        for key in holes:
            opened.setdefault(key, now)
            if key not in told and now - opened[key] >= gap_grace:
                told.add(key)
                gateway, first, last = key
                typer.echo(f"GAP {gateway}: missing #{first}..#{last} ({last - first + 1}) "
                           f"for over {gap_grace:g} s")  # fmt: skip
        for key in set(opened) - holes:
            del opened[key]
        if gap_grace:
            loop.call_later(1.0, tell_gaps)

    if gap_grace and not json_out:
        loop.call_later(1.0, tell_gaps)

    def show(verdict: Verdict) -> None:
        seen[verdict.outcome] += 1
        for line in (json_lines if json_out else lines)(verdict):
            if gap_grace and not json_out and line.startswith("GAP "):
                continue  # said by tell_gaps once the grace is over, if still open
            typer.echo(line)
        sys.stdout.flush()  # one line per message as it comes, even into a pipe
        if count is not None and sum(seen.values()) >= count:
            stop.set()

    try:
        await watch(url, verifier, show, prefix=prefix, stop=stop, on_ready=ready, ca_file=ca_file)
    except BrokerError as err:
        typer.echo(f"cityedge: broker {err}", err=True)
        return EXIT_BROKER
    holes = verifier.missing()
    summary = ", ".join(f"{n} {outcome}" for outcome, n in seen.items() if n) or "no messages"
    typer.echo(f"{summary}" + (f"; {len(holes)} gap(s) open" if holes else ""), err=True)
    for gap in holes[:20]:
        typer.echo(f"  missing {gap.gateway} #{gap.first}..#{gap.last}", err=True)
    if seen[Outcome.REJECTED]:
        return EXIT_REJECTED
    if count is not None and timed_out and sum(seen.values()) < count:
        return EXIT_INCOMPLETE
    return EXIT_OK


# --- send ----------------------------------------------------------------------------------


def parse_args(items: list[str]) -> dict[str, Any]:
    """`key=value` items; a value is read as JSON when it is JSON (80, true, "80",
    [1,2]), else taken as text (auto, lamppost-03)."""
    args: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise _fail(f"argument {item!r}: expected key=value")
        try:
            args[name] = json.loads(text)
        except ValueError:
            args[name] = text
    return args


@app.command("send")
def send_cli(
    gateway: Annotated[str, typer.Argument(help="Target gateway id.")],
    device: Annotated[str, typer.Argument(help="Device name, or - for none.")],
    op: Annotated[str, typer.Argument(help="Operation: write, ping, rebirth, …")],
    args: Annotated[list[str] | None, typer.Argument(help="key=value arguments.")] = None,
    broker: BrokerOption = "mqtt://127.0.0.1:1883",
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            "-k",
            envvar="CITYEDGE_COMMAND_KEY",
            help="The command-post private key (default ~/.config/cityedge/command-post.key).",
        ),
    ] = None,
    trust: TrustOption = [],  # noqa: B006
    site: Annotated[
        str | None,
        typer.Option("--site", help="The gateway's site (default: from its retained state)."),
    ] = None,
    ttl: Annotated[
        float, typer.Option("--ttl", min=0.001, help="Seconds the command stays valid.")
    ] = 60.0,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.001, help="Seconds to wait for the result.")
    ] = 30.0,
    prefix: PrefixOption = DEFAULT_PREFIX,
    json_out: JsonFlag = False,
    ca_file: CaOption = None,
    log_level: LogOption = "error",
) -> None:
    """Sign a command, publish it to the gateway and print its signed result.

    ARGS are key=value (value read as JSON when it is JSON, else as text). Exit status: 0 "done", 1 another result code, 2 bad arguments, 3 no verified result within --timeout (or the site is unknown), 4 broker trouble.
    """  # noqa: E501
    from cityedge.central.commands import new_command
    from cityedge.protocol.key_files import load_signing_key
    from cityedge.protocol.keys import KeyFileError

    _quiet_logs(log_level)
    verifier = _verifier(trust, [], prefix)
    url = _broker(broker)
    try:
        signing_key = load_signing_key(key or default_central_key())
    except KeyFileError as err:
        raise _fail(str(err)) from None
    try:
        command = new_command(
            signing_key, gateway, op,
            device=None if device == "-" else device, args=parse_args(args or []), ttl=ttl,
        )  # fmt: skip
    except ValueError as err:
        raise _fail(str(err)) from None
    code = asyncio.run(_send(url, signing_key, command, verifier, site, prefix, timeout,
                             json_out, ca_file))  # fmt: skip
    raise typer.Exit(code)


async def _send(
    url: BrokerUrl,
    key: SigningKey,
    command: Command,
    verifier: Verifier,
    site: str | None,
    prefix: str,
    wait: float,
    json_out: bool,
    ca_file: Path | None,
) -> int:
    from cityedge.central.commands import NoResult, SiteNotFound, send_command
    from cityedge.central.console import jsonable
    from cityedge.central.link import BrokerError
    from cityedge.sdk.model import ResultCode

    typer.echo(f"command {command.id} to {command.target}: {command.op}", err=True)
    try:
        result = await send_command(
            url, key, command, trusted=verifier, site=site, prefix=prefix,
            within=wait, ca_file=ca_file,
        )  # fmt: skip
    except (NoResult, SiteNotFound) as err:
        typer.echo(f"cityedge: {err}", err=True)
        return EXIT_INCOMPLETE
    except BrokerError as err:
        typer.echo(f"cityedge: broker {err}", err=True)
        return EXIT_BROKER
    except ValueError as err:
        typer.echo(f"cityedge: {err}", err=True)
        return EXIT_USAGE
    if json_out:
        typer.echo(json.dumps(jsonable({
            "command_id": result.command_id, "digest": result.command_digest.hex(),
            "code": str(result.code), "detail": result.detail,
            "readback": result.readback, "readback_matched": result.readback_matched,
            "data": result.data,
        }), ensure_ascii=False))  # fmt: skip
    else:
        detail = f" — {result.detail}" if result.detail else ""
        readback = "" if result.readback is None else f" readback={result.readback!r}"
        if result.readback_matched is not None:
            readback += " (matches)" if result.readback_matched else " (DIFFERS)"
        typer.echo(f"result {result.command_id}: {result.code}{detail}{readback}")
    return EXIT_OK if result.code is ResultCode.DONE else EXIT_REJECTED


if __name__ == "__main__":
    app()
