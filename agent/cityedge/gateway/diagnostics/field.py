"""Checks of the street side: serial ports, Modbus devices, LoRa forwarder, BLE adapter.

Found from the config's driver sections, whatever the driver: any `port` that
is a path is a serial port to check. Modbus devices are read for real, through
the running agent when there is one (one bus, one owner: a second master on an
RS-485 line would garble both), through a driver built here when there is not.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cityedge.gateway.control.overrides import failure_text
from cityedge.gateway.control.protocol import ControlError
from cityedge.gateway.diagnostics.context import CheckContext
from cityedge.gateway.diagnostics.results import CheckResult, fail, ok, warn
from cityedge.gateway.registry import build_driver
from cityedge.sdk.model import DeviceError

PARALLEL_READS = 8


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


async def check_modbus_devices(ctx: CheckContext) -> list[CheckResult]:
    cfg = ctx.config
    if cfg is None or not cfg.drivers.get("modbus"):
        return []
    agent = await ctx.running_agent()
    targets = _modbus_targets(cfg.drivers["modbus"])
    gate = asyncio.Semaphore(PARALLEL_READS)
    if agent is not None:

        async def through_agent(device: str, point: str, key: str) -> CheckResult:
            async with gate:
                return await _read_via_agent(agent, device, point, key, ctx.device_timeout)

        return list(await asyncio.gather(*(through_agent(*t[1:]) for t in targets)))
    assert ctx.loaded is not None
    env = ctx.loaded.driver_env()
    results: list[CheckResult] = []
    for i, section in enumerate(cfg.drivers["modbus"]):
        if not getattr(section, "enabled", True):
            continue
        driver = build_driver("modbus", section, env)

        async def directly(device: str, point: str, key: str, driver: Any = driver) -> CheckResult:
            async with gate:
                return await _read_directly(driver, device, point, key, ctx.device_timeout)

        try:
            mine = [t for t in targets if t[0] == i]
            results += await asyncio.gather(*(directly(*t[1:]) for t in mine))
        finally:
            close = getattr(driver, "aclose", None)
            if close is not None:
                await close()
    return results


def _modbus_targets(sections: list[Any]) -> list[tuple[int, str, str, str]]:
    """(section index, device, first point, where it is configured) of every device."""
    targets = []
    for i, section in enumerate(sections):
        if not getattr(section, "enabled", True):
            continue
        for j, device in enumerate(getattr(section, "devices", []) or []):
            profile = getattr(device, "profile", None)
            points = list(getattr(profile, "points", {}) or {})
            where = f"drivers.modbus[{i}].devices[{j}]"
            endpoint = [
                f"{k} {getattr(device, k)}"
                for k in ("host", "port", "unit")
                if getattr(device, k, None) is not None
            ]
            if endpoint:
                where += f" ({', '.join(endpoint)})"
            targets.append((i, device.name, points[0] if points else "", where))
    return targets


async def _read_directly(
    driver: Any, device: str, point: str, where: str, timeout: float
) -> CheckResult:
    started = time.perf_counter()
    try:
        readings = await asyncio.wait_for(driver.read(device, [point] if point else None), timeout)
    except (TimeoutError, DeviceError) as exc:
        return _dead(device, failure_text(exc, timeout), where)
    ms = (time.perf_counter() - started) * 1000
    shown = f": {readings[0].point} = {readings[0].value}" if readings else ""
    return ok(f"modbus.{device}", f"answered in {ms:.0f} ms{shown}")


async def _read_via_agent(
    agent: Any, device: str, point: str, where: str, timeout: float
) -> CheckResult:
    started = time.perf_counter()
    try:
        data = await asyncio.to_thread(
            agent.call, "read", device=device, points=[point] if point else None, timeout=timeout
        )
    except ControlError as exc:
        return _dead(device, str(exc), where)
    ms = (time.perf_counter() - started) * 1000
    readings = data.get("readings") if isinstance(data, dict) else None
    shown = f": {readings[0]['point']} = {readings[0]['value']}" if readings else ""
    return ok(f"modbus.{device}", f"answered the running agent in {ms:.0f} ms{shown}")


def _dead(device: str, why: str, where: str) -> CheckResult:
    return fail(
        f"modbus.{device}",
        f"{device} does not answer: {why}",
        f"check the device's power and cabling, and its address in {where}",
    )


async def check_forwarder(ctx: CheckContext) -> list[CheckResult]:
    cfg = ctx.config
    if cfg is None or not cfg.drivers.get("lorawan"):
        return []
    agent = await ctx.running_agent()
    if agent is None:
        return [
            warn(
                "lorawan.forwarder",
                "agent not running: cannot tell whether the packet forwarder is heard",
                "start the agent (`systemctl start cityedge`) and run the check again",
            )
        ]
    try:
        data = await asyncio.to_thread(agent.call, "forwarders")
    except ControlError as exc:
        return [warn("lorawan.forwarder", f"cannot ask the agent: {exc}", "see the agent's log")]
    seen = [h.get("last_seen") for h in data.get("health", []) if isinstance(h, dict)]
    last = max((s for s in seen if isinstance(s, int | float)), default=None)
    remedy = (
        "check the concentrator: is the packet forwarder running, and do server_address and "
        "serv_port_up in its global_conf.json point at this gateway's UDP listener?"
    )
    if last is None:
        return [
            fail("lorawan.forwarder", "no packet forwarder heard since the agent started", remedy)
        ]
    age = ctx.now() - last
    if age > ctx.forwarder_silence:
        return [fail("lorawan.forwarder", f"packet forwarder last heard {age:.0f} s ago", remedy)]
    return [ok("lorawan.forwarder", f"packet forwarder heard {max(age, 0):.0f} s ago")]


async def check_ble_adapters(ctx: CheckContext) -> list[CheckResult]:
    cfg = ctx.config
    if cfg is None:
        return []
    results = []
    for i, section in enumerate(cfg.drivers.get("ble", [])):
        adapter = str(getattr(section, "adapter", "hci0"))
        path = ctx.sysfs / "class" / "bluetooth" / adapter
        name = f"ble.{adapter}"
        if path.exists():
            results.append(ok(name, f"Bluetooth adapter {adapter} present"))
        else:
            results.append(
                fail(
                    name,
                    f"Bluetooth adapter {adapter} not found (drivers.ble[{i}].adapter)",
                    "plug in or enable the adapter (`rfkill unblock bluetooth`, "
                    f"`systemctl status bluetooth`), or fix drivers.ble[{i}].adapter",
                )
            )
    return results
