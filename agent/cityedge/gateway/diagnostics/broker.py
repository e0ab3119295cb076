"""Checks of the way to the command post, one layer at a time: DNS, TCP, TLS, MQTT.

Each layer is tried only when the one below works, so the first ✘ is the
layer to fix. The MQTT step is a real aiomqtt connect and subscribe with the
gateway's own credentials, under its client id plus "-check" (reusing the
agent's id would make the broker drop the running agent's session).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
from cryptography import x509

from cityedge.gateway.config import UplinkSection
from cityedge.gateway.diagnostics.context import CheckContext
from cityedge.protocol.topics import topic_for
from cityedge.sdk.checks import CheckResult, Status, fail, ok, warn

AUTH_CODES = frozenset({4, 5, 134, 135})  # MQTT 3.1.1 and 5 "bad credentials"/"not authorised"
MQTT_LOG = logging.getLogger("cityedge.check.mqtt")
MQTT_LOG.propagate = False  # what paho says goes into the check's detail, not onto the screen


class _Heard(logging.Handler):
    """Keeps paho's last complaint (e.g. the TLS alert a broker sent before hanging up)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.last = record.getMessage()[:300]


async def check_broker(ctx: CheckContext) -> list[CheckResult]:
    cfg = ctx.config
    if cfg is None:
        return []
    up = cfg.uplink
    where = f"{up.host}:{up.port}"
    results = [await _dns(up, ctx.network_timeout)]
    if _failed(results):
        return results
    results.append(await _tcp(up, where, ctx.network_timeout))
    if _failed(results):
        return results
    if up.tls:
        results.append(await _tls(up, where, ctx.network_timeout))
        if _failed(results):
            return results
    topic = topic_for(up.topic_prefix, cfg.gateway.site, cfg.gateway.id, "command")
    client_id = (up.client_id or f"{cfg.gateway.site}-{cfg.gateway.id}") + "-check"
    results.append(await _mqtt(up, where, topic, client_id, ctx.network_timeout))
    return results


async def _dns(up: UplinkSection, timeout: float) -> CheckResult:
    try:
        ipaddress.ip_address(up.host)
    except ValueError:
        pass
    else:
        return ok("broker.dns", f"{up.host} is an address: no lookup needed")
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(up.host, up.port, type=socket.SOCK_STREAM), timeout
        )
    except TimeoutError:
        return fail(
            "broker.dns",
            f"no answer resolving {up.host} within {timeout:g} s",
            "check the gateway's DNS servers (`resolvectl status`, /etc/resolv.conf) and its route",
        )
    except OSError as exc:
        return fail(
            "broker.dns",
            f"cannot resolve {up.host}: {getattr(exc, 'strerror', None) or exc}",
            "check the spelling of uplink.host and the gateway's DNS servers",
        )
    addresses = sorted({str(info[4][0]) for info in infos})
    return ok("broker.dns", f"{up.host} → {', '.join(addresses[:3])}")


async def _tcp(up: UplinkSection, where: str, timeout: float) -> CheckResult:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(up.host, up.port), timeout)
    except TimeoutError:
        return fail(
            "broker.tcp",
            f"no answer from {where} within {timeout:g} s",
            "a firewall drops the connection or the broker's host is down; check the uplink "
            "(cellular modem, fibre) and the route",
        )
    except ConnectionRefusedError:
        return fail(
            "broker.tcp",
            f"connection refused by {where}",
            "the broker is not listening there: is it running, and is uplink.port right "
            "(1883 plain, 8883 TLS)?",
        )
    except OSError as exc:
        return fail(
            "broker.tcp",
            f"cannot connect to {where}: {exc.strerror or exc}",
            "check the gateway's network (address, route, firewall)",
        )
    writer.close()
    await _closed(writer)
    return ok("broker.tcp", f"{where} accepts connections")


def tls_context(up: UplinkSection) -> ssl.SSLContext:
    """The same TLS set-up as the uplink's: the configured CA, the client certificate."""
    context = ssl.create_default_context(cafile=str(up.ca_file) if up.ca_file else None)
    if up.cert_file and up.key_file:
        context.load_cert_chain(str(up.cert_file), str(up.key_file))
    return context


async def _tls(up: UplinkSection, where: str, timeout: float) -> CheckResult:
    try:
        context = await asyncio.to_thread(tls_context, up)
    except (OSError, ssl.SSLError) as exc:
        return fail(
            "broker.tls",
            f"cannot load the TLS files: {_ssl_text(exc)}",
            "check uplink.ca_file, cert_file and key_file (PEM; the key matches the certificate)",
        )
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(
                up.host,
                up.port,
                ssl=context,
                server_hostname=up.host,
                ssl_handshake_timeout=timeout,
            ),
            timeout + 1,
        )
    except ssl.SSLCertVerificationError as exc:
        return fail(
            "broker.tls",
            f"the broker's certificate is not trusted: {exc.verify_message or _ssl_text(exc)}",
            "uplink.ca_file must be the CA that signed the broker's certificate, and that "
            f"certificate must name {up.host}",
        )
    except ssl.SSLError as exc:
        return fail(
            "broker.tls",
            f"TLS handshake with {where} failed: {_ssl_text(exc)}",
            "is uplink.port the broker's TLS listener? does the broker accept this client "
            "certificate?",
        )
    except TimeoutError:
        return fail(
            "broker.tls",
            f"no TLS handshake with {where} within {timeout:g} s",
            "is uplink.port the broker's TLS listener (usually 8883)?",
        )
    except OSError as exc:
        return fail(
            "broker.tls",
            f"TLS connection to {where} failed: {exc.strerror or exc}",
            "check the network and the broker's TLS listener",
        )
    tls = writer.get_extra_info("ssl_object")
    version = tls.version() if tls is not None else "TLS"
    peer = writer.get_extra_info("peercert") or {}
    writer.close()
    await _closed(writer)
    return ok("broker.tls", f"{version} with {where}, broker certificate {_subject(peer)} trusted")


async def _mqtt(
    up: UplinkSection, where: str, topic: str, client_id: str, timeout: float
) -> CheckResult:
    password = None
    if up.password_file is not None:
        try:
            password = up.password_file.read_text().strip()
        except OSError as exc:
            return fail(
                "broker.mqtt",
                f"cannot read uplink.password_file {up.password_file}: {exc.strerror}",
                "install the password file readable by the agent's user (mode 0600)",
            )
    try:
        context = tls_context(up) if up.tls else None
    except (OSError, ssl.SSLError) as exc:
        return fail(
            "broker.mqtt",
            f"cannot load the TLS files: {_ssl_text(exc)}",
            "check uplink.ca_file, cert_file and key_file",
        )
    options: dict[str, Any] = {
        "hostname": up.host,
        "port": up.port,
        "identifier": client_id,
        "username": up.username,
        "password": password,
        "clean_session": True,
        "keepalive": 30,
        "timeout": timeout,
        "tls_context": context,
        "logger": MQTT_LOG,
    }
    who = f"user {up.username}" if up.username else "certificate" if up.cert_file else "anonymous"
    heard = _Heard()
    MQTT_LOG.addHandler(heard)
    try:
        return await _login(options, where, topic, who, timeout, heard)
    finally:
        MQTT_LOG.removeHandler(heard)


async def _login(
    options: dict[str, Any], where: str, topic: str, who: str, timeout: float, heard: _Heard
) -> CheckResult:
    try:
        async with asyncio.timeout(timeout * 3):
            async with aiomqtt.Client(**options) as client:
                granted = await client.subscribe(topic, qos=1, timeout=timeout)
    except aiomqtt.MqttCodeError as exc:
        code = _code(exc.rc)
        if code in AUTH_CODES:
            return fail(
                "broker.mqtt",
                f"{where} refused the login ({who}): {exc}",
                "check uplink.username and password_file (or the client certificate), and the "
                "broker's ACL for this gateway",
            )
        return fail(
            "broker.mqtt",
            f"MQTT connect to {where} failed: {exc}",
            "see the broker's log for why it closed the connection",
        )
    except aiomqtt.MqttError as exc:
        said = f" ({heard.last})" if heard.last else ""
        return fail(
            "broker.mqtt",
            f"MQTT connect to {where} failed: {exc}{said}",
            "see the broker's log; a broker that drops TLS clients often refused the client "
            "certificate",
        )
    except TimeoutError:
        return fail(
            "broker.mqtt",
            f"no MQTT answer from {where} within {timeout:g} s",
            "is uplink.port an MQTT listener? see the broker's log",
        )
    except (OSError, ssl.SSLError) as exc:
        return fail(
            "broker.mqtt",
            f"MQTT connection to {where} failed: {_ssl_text(exc)}",
            "check the network and the broker",
        )
    codes = [_code(g) for g in granted]
    if not codes or any(c >= 0x80 for c in codes):
        return fail(
            "broker.subscribe",
            f"logged in ({who}) but the subscription to {topic} was refused",
            f"the broker's ACL must let this gateway read {topic}",
        )
    return ok("broker.mqtt", f"logged in ({who}), subscribed to {topic} (QoS {max(codes)})")


async def check_certificates(ctx: CheckContext) -> list[CheckResult]:
    cfg = ctx.config
    if cfg is None or not cfg.uplink.tls:
        return []
    results = []
    if cfg.uplink.cert_file is not None:
        results.append(_expiry("tls.client_cert", cfg.uplink.cert_file, "client certificate", ctx))
    if cfg.uplink.ca_file is not None:
        results.append(_expiry("tls.ca", cfg.uplink.ca_file, "CA certificate", ctx))
    return results


def _expiry(name: str, path: Path, what: str, ctx: CheckContext) -> CheckResult:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return fail(name, f"{path}: {exc.strerror}", f"install the {what} at {path}")
    try:
        certs = (
            x509.load_pem_x509_certificates(data)
            if b"-----BEGIN" in data
            else [x509.load_der_x509_certificate(data)]
        )
    except ValueError as exc:
        return fail(
            name, f"{path}: not a certificate ({exc})", f"{path} must hold the {what} (PEM)"
        )
    cert = min(certs, key=lambda c: c.not_valid_after_utc)  # a bundle lives as long as its first
    now = datetime.fromtimestamp(ctx.now(), UTC)
    after, before = cert.not_valid_after_utc, cert.not_valid_before_utc
    subject = cert.subject.rfc4514_string() or "(no subject)"
    renew = f"renew the {what} and install it at {path}"
    if after <= now:
        days = (now - after).days
        return fail(
            name,
            f"{subject} expired on {after:%Y-%m-%d} ({days} days ago)",
            renew + "; the broker refuses expired certificates",
        )
    if before > now:
        return fail(
            name,
            f"{subject} is not valid before {before:%Y-%m-%d %H:%M} UTC",
            "check the clock (see the clock check), or the certificate's dates",
        )
    left = (after - now).total_seconds() / 86400
    if left < ctx.cert_warn_days:
        return warn(
            name,
            f"{subject} expires in {left:.0f} days ({after:%Y-%m-%d})",
            renew + f" before {after:%Y-%m-%d}",
        )
    return ok(name, f"{subject} valid until {after:%Y-%m-%d} ({left:.0f} days)")


def _subject(peer: dict[str, Any]) -> str:
    for rdn in peer.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return f"CN={value}"
    return "(no CN)"


def _ssl_text(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if isinstance(exc, ssl.SSLError) and reason:
        return str(reason).replace("_", " ").lower()
    return str(getattr(exc, "strerror", None) or exc)


async def _closed(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
        await asyncio.wait_for(writer.wait_closed(), 2)


def _failed(results: list[CheckResult]) -> bool:
    return results[-1].status is Status.FAIL


def _code(rc: object) -> int:
    """An MQTT reason code as a number, whether paho gave an int or a ReasonCode."""
    value = getattr(rc, "value", rc)
    return value if isinstance(value, int) else 0
