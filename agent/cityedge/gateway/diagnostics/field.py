"""Checks of the street side: serial ports, and each driver's own checks.

Serial ports are found from the config's driver sections, whatever the driver:
any `port` that is a path is a serial port to check. Everything that knows a
protocol (a Modbus read, a LoRa forwarder, a BLE adapter) is the driver's own
`checks` module, found through the registry and run here as a group named after
the driver's kind.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from cityedge.gateway.diagnostics.context import CheckContext
from cityedge.gateway.registry import driver_checks
from cityedge.sdk.checks import CheckResult, fail, ok


def serial_ports(sections: dict[str, list[Any]]) -> Iterator[tuple[str, Path]]:
    """(key path, device path) of every `port` that names a file, in any driver section."""
    for kind, entries in sections.items():
        for i, section in enumerate(entries):
            yield from _ports(section.dump(), f"drivers.{kind}[{i}]")


def _ports(node: Any, where: str) -> Iterator[tuple[str, Path]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "port" and isinstance(value, str | Path) and str(value).startswith("/"):
                yield f"{where}.port", Path(value)
            else:
                yield from _ports(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _ports(value, f"{where}[{i}]")


async def check_serial_ports(ctx: CheckContext) -> list[CheckResult]:
    cfg = ctx.config
    if cfg is None:
        return []
    results = []
    seen: set[Path] = set()
    for key, port in serial_ports(cfg.drivers):
        if port in seen:
            continue  # one bus shared by several sections is checked once
        seen.add(port)
        results.append(_serial_port(key, port))
    return results


def _serial_port(key: str, port: Path) -> CheckResult:
    name = f"serial.{port.name}"
    try:
        st = port.stat()
    except FileNotFoundError:
        return fail(
            name,
            f"{port} does not exist ({key})",
            "plug in the cable or USB adapter; list ports with `ls -l /dev/serial/by-id/`; "
            f"then fix {key}",
        )
    except OSError as exc:
        return fail(name, f"{port}: {exc.strerror} ({key})", f"check the permissions of {port}")
    if not stat.S_ISCHR(st.st_mode):
        return fail(name, f"{port} is not a serial device ({key})", f"{key} must name a tty")
    if not os.access(port, os.R_OK | os.W_OK):
        return fail(
            name,
            f"{port}: permission denied for this user",
            "add the agent's user to the port's group (usually dialout; systemd: "
            "SupplementaryGroups=dialout)",
        )
    return ok(name, f"{port} present and accessible ({key})")


def driver_group(kind: str) -> Callable[[CheckContext], Awaitable[list[CheckResult]]]:
    """The check group of driver `kind`: its `checks` module, given every one of its
    config sections (their positions are the `drivers.<kind>[i]` of the messages)."""

    async def check(ctx: CheckContext) -> list[CheckResult]:
        cfg = ctx.config
        if cfg is None:
            return []
        return await driver_checks(kind).checks(cfg.drivers.get(kind, []), ctx.check_env())

    check.__name__ = f"check_{kind}"
    return check
