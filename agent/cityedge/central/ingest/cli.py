"""`cityedge central ingest` and `cityedge central export`: options in, a service or a file out.
(`cityedge central rejected` is in `rejected_cli.py`, `cityedge central keys` in
`keys_cli.py`.)

Exit status of `ingest`: 0 stopped by SIGTERM/SIGINT (or `--declare-only` done);
2 bad arguments; 4 `--declare-only` could not reach the engine.
Exit status of `export`: 0 written; 2 bad arguments; 4 the store cannot be read.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cityedge.central.ingest.options import (
    DEFAULT_STORE,
    EXIT_ENGINE,
    EXIT_OK,
    EXIT_USAGE,
    fail,
    trust_specs,
    trusted_store,
)
from cityedge.protocol.topics import DEFAULT_PREFIX, NAME_PATTERN, NAME_RULE
from cityedge.sdk.addresses import AddressProblem, parse_address

if TYPE_CHECKING:
    from cityedge.central.ingest.sources.base import Source


def make_source(url: str, *, prefix: str, site: str | None, client_id: str | None,
                prefetch: int) -> Source:  # fmt: skip
    """The source an URL names: mqtt(s)://, amqp(s)://, nats://."""
    scheme = url.partition("://")[0].lower()
    if scheme in ("mqtt", "mqtts"):
        from cityedge.central.ingest.sources.mosquitto import MosquittoSource
        from cityedge.central.link import BrokerUrlError, parse_broker_url

        try:
            broker = parse_broker_url(url)
        except BrokerUrlError as err:
            raise fail(str(err)) from None
        ident = client_id or (f"cityedge-ingest-{site}" if site else "cityedge-ingest")
        return MosquittoSource(broker, client_id=ident, prefix=prefix, site=site)
    if scheme in ("amqp", "amqps"):
        from cityedge.central.ingest.sources.rabbitmq import RabbitSource

        return RabbitSource(url, prefix=prefix, site=site, prefetch=prefetch)
    if scheme in ("nats", "tls"):
        from cityedge.central.ingest.sources.nats import NatsSource

        return NatsSource(url, prefix=prefix, site=site, max_ack_pending=prefetch)
    raise fail(f"--source {url!r}: expected mqtt://, amqp:// or nats://")


def ingest_cli(
    source: Annotated[
        str,
        typer.Option(
            "--source",
            "-s",
            envvar="CITYEDGE_INGEST_SOURCE",
            help="mqtt://host:port (Mosquitto, persistent session), "
            "amqp://user:pass@host:port/vhost (RabbitMQ quorum queue) or "
            "nats://host:port (JetStream).",
        ),
    ] = "mqtt://127.0.0.1:1883",
    store: Annotated[
        str,
        typer.Option(
            "--store",
            envvar="CITYEDGE_INGEST_STORE",
            help="postgresql://… or sqlite:PATH (the embedded default).",
        ),
    ] = DEFAULT_STORE,
    trust: Annotated[
        list[str],
        typer.Option(
            "--trust",
            "-t",
            help="A gateway public key: a file, 'ed25519:<hex>' or "
            "GATEWAY=KEY. Repeat for each gateway.",
        ),
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
    trust_dir: Annotated[
        Path | None,
        typer.Option(
            "--trust-dir",
            help="A directory of gateway keys, one GATEWAY.pub per "
            "gateway (each key bound to the gateway its file is named after).",
        ),
    ] = None,
    site: Annotated[
        str | None, typer.Option("--site", help="Take only this site's messages.")
    ] = None,
    prefix: Annotated[str, typer.Option("--prefix", help="Topic prefix.")] = DEFAULT_PREFIX,
    client_id: Annotated[
        str | None,
        typer.Option(
            "--client-id",
            help="MQTT: the persistent session's client id "
            "(default cityedge-ingest[-SITE]); one per worker.",
        ),
    ] = None,
    prefetch: Annotated[
        int,
        typer.Option(
            "--prefetch",
            min=1,
            help="Unacknowledged messages one worker "
            "may hold (AMQP prefetch, JetStream max_ack_pending).",
        ),
    ] = 2000,
    max_batch: Annotated[
        int, typer.Option("--max-batch", min=1, help="Messages per database transaction.")
    ] = 500,
    http: Annotated[
        str | None,
        typer.Option("--http", help="HOST:PORT for /health and /metrics (port 0: any free)."),
    ] = None,
    declare_only: Annotated[
        bool, typer.Option("--declare-only", help="Create the queue or stream, then exit.")
    ] = False,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning, error.")
    ] = "info",
) -> None:
    """Take gateway messages from a durable source, verify them, store them; acknowledge
    each batch only after its transaction committed."""
    from cityedge.sdk.logs import configure_logging

    if site is not None and NAME_PATTERN.match(site) is None:
        raise fail(f"--site {site!r}: expected {NAME_RULE}")
    if log_level not in ("debug", "info", "warning", "error"):
        raise fail(f"--log-level {log_level!r}: expected debug, info, warning or error")
    configure_logging(log_level, "json")
    chosen = make_source(source, prefix=prefix, site=site, client_id=client_id,
                         prefetch=prefetch)  # fmt: skip
    if declare_only:
        raise typer.Exit(asyncio.run(_declare(chosen)))
    trust = trust_specs(trust, trust_dir)
    raise typer.Exit(asyncio.run(_run(chosen, store, trust, prefix, max_batch, http)))


async def _declare(source: Source) -> int:
    from cityedge.central.ingest.sources.base import SourceError

    try:
        await source.connect()
    except SourceError as err:
        typer.echo(f"cityedge: {err}", err=True)
        return EXIT_ENGINE
    await source.close()
    typer.echo(f"declared: {source.name}", err=True)
    return EXIT_OK


async def _run(source: Source, store_url: str, trust: list[str], prefix: str, max_batch: int,
               http: str | None) -> int:  # fmt: skip
    from cityedge.central.ingest.decode import Decoder
    from cityedge.central.ingest.metrics import Metrics, serve
    from cityedge.central.ingest.service import IngestService, Tuning

    store, verifier = trusted_store(trust, store_url, prefix)
    metrics = Metrics()
    if http is not None:
        try:  # ":9100" listens on loopback
            host, port = parse_address(f"127.0.0.1{http}" if http.startswith(":") else http)
        except AddressProblem as err:
            typer.echo(f"cityedge: --http: {err}", err=True)
            return EXIT_USAGE
        server = serve(metrics, host, port)
        typer.echo(f"http {host}:{server.server_port}", err=True)
    service = IngestService(source, store, Decoder(verifier), metrics=metrics,
                            tuning=Tuning(max_batch=max_batch))  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    typer.echo(f"ingest running: {source.name} -> {store_url.partition('://')[0]}", err=True)
    await service.run(stop)
    t = service.total
    typer.echo(f"stored {t.messages} messages ({t.readings} readings), "
               f"{t.duplicates} duplicates dropped, {t.rejected} rejected", err=True)  # fmt: skip
    return EXIT_OK


def export_cli(
    site: Annotated[str, typer.Option("--site", help="The site (town) to export.")],
    day: Annotated[str, typer.Option("--day", help="YYYY-MM-DD, a UTC day.")],
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    store: Annotated[
        str, typer.Option("--store", envvar="CITYEDGE_INGEST_STORE", help="As for ingest.")
    ] = DEFAULT_STORE,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here (default: stdout).")
    ] = None,
) -> None:
    """Write a day of a site's public data (per-device daily aggregates) for the open-data
    portal; only points classified public in docs/open-data.md ever leave."""
    from cityedge.central.ingest.export import ExportError, export
    from cityedge.sdk.atomic import write_atomic

    if NAME_PATTERN.match(site) is None:
        raise fail(f"--site {site!r}: expected {NAME_RULE}")
    try:
        when = dt.date.fromisoformat(day)
    except ValueError:
        raise fail(f"--day {day!r}: expected YYYY-MM-DD") from None
    if fmt not in ("csv", "json"):
        raise fail(f"--format {fmt!r}: expected csv or json")
    try:
        text = asyncio.run(export(store, site, when, fmt))
    except ExportError as err:
        raise fail(str(err), EXIT_ENGINE) from None
    if out is None:
        typer.echo(text, nl=False)
    else:
        try:
            write_atomic(out, text)
        except OSError as err:
            raise fail(f"--out {out}: {err.strerror}") from None


def register(app: typer.Typer) -> None:
    """Add `ingest`, `export`, `rejected` and `keys` to the `cityedge central` command
    group."""
    from cityedge.central.ingest.keys_cli import app as keys_app
    from cityedge.central.ingest.rejected_cli import app as rejected_app

    app.command("ingest")(ingest_cli)
    app.command("export")(export_cli)
    app.add_typer(rejected_app, name="rejected")
    app.add_typer(keys_app, name="keys")
