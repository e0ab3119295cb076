"""Reaching the broker from the command post: broker URLs and the MQTT client.

`mqtt://host[:port]` (default 1883) or `mqtts://host[:port]` (TLS, default
8883); IPv6 hosts in brackets (`mqtt://[::1]:1883`); an optional user name
(`mqtt://ops@host`). A password in a URL would show in every process list, so
it is refused: pass it through the environment (`CITYEDGE_MQTT_PASSWORD`).
"""

from __future__ import annotations

import os
import re
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiomqtt

from cityedge.protocol.mqtt import MQTT_SOCKET_OPTIONS

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
PASSWORD_ENV = "CITYEDGE_MQTT_PASSWORD"


class BrokerUrlError(ValueError):
    """A broker URL that cannot be used; the message quotes it and says why."""


class BrokerError(Exception):
    """The broker could not be reached, or the connection was lost."""


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool = False
    username: str | None = None

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"


def _redacted(url: str) -> str:
    """The URL as it may be shown: a password in it becomes ***."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:@/]*):[^@/]*@", r"\1:***@", url)


def parse_broker_url(url: str) -> BrokerUrl:
    text = url.strip()
    shown = _redacted(url)
    if "://" not in text:
        raise BrokerUrlError(f"broker URL {shown!r}: no scheme; write e.g. mqtt://{text or 'host'}")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise BrokerUrlError(f"broker URL {shown!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise BrokerUrlError(f"broker URL {shown!r}: scheme {scheme!r}, expected mqtt or mqtts")
    if not parts.hostname:
        raise BrokerUrlError(f"broker URL {shown!r}: no host")
    if parts.password is not None:
        raise BrokerUrlError(
            f"broker URL {shown!r}: a password in the URL is visible to every user of this "
            f"machine; set {PASSWORD_ENV} instead"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BrokerUrlError(f"broker URL {shown!r}: unexpected path, query or fragment")
    if port == 0:
        raise BrokerUrlError(f"broker URL {shown!r}: port must be 1-65535")
    return BrokerUrl(
        host=parts.hostname,
        port=port or DEFAULT_PORTS[scheme],
        tls=scheme == "mqtts",
        username=unquote(parts.username) if parts.username else None,
    )


def as_broker_url(url: str | BrokerUrl) -> BrokerUrl:
    return url if isinstance(url, BrokerUrl) else parse_broker_url(url)


def mqtt_client(
    url: BrokerUrl,
    *,
    timeout: float = 10.0,
    ca_file: Path | None = None,
    role: str = "console",
    session: str | None = None,
) -> aiomqtt.Client:
    """A clean-session client with a unique id (two consoles never kick each other off),
    or, with `session`, a persistent session under that client id: the broker keeps
    what arrives for it while it is away."""
    tls_context = None
    if url.tls:
        try:
            tls_context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise BrokerError(f"CA file {ca_file}: {exc}") from None
    return aiomqtt.Client(
        url.host,
        url.port,
        username=url.username,
        password=os.environ.get(PASSWORD_ENV) if url.username else None,
        identifier=session or f"cityedge-{role}-{secrets.token_hex(4)}",
        clean_session=session is None,
        timeout=timeout,
        keepalive=max(5, int(timeout * 3)),
        tls_context=tls_context,
        max_queued_incoming_messages=10_000,
        socket_options=MQTT_SOCKET_OPTIONS,
    )
