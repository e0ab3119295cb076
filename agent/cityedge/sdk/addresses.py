"""Listening addresses written HOST:PORT, parsed once for every part that listens:
the maintenance page, the TALQ gateway API, the ingest's health endpoint."""

from __future__ import annotations

import ipaddress


class AddressProblem(ValueError):
    """A listening address that is not HOST:PORT."""


def parse_address(text: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port`; AddressProblem says what is wrong. Port 0 asks the
    system for any free port (tests; the page logs the one it got)."""
    host, sep, port_text = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit():
        raise AddressProblem(f"expected HOST:PORT such as 127.0.0.1:8080, got {text!r}")
    port = int(port_text)
    if port > 65535:
        raise AddressProblem(f"port {port} is out of range: expected 1-65535 (got {text!r})")
    if bracketed or ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise AddressProblem(f"{host!r} is not an IPv6 address") from None
        if not bracketed:
            raise AddressProblem(f"an IPv6 address goes in brackets: [{host}]:{port}")
    return host, port
