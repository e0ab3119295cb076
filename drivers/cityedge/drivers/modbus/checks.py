"""`cityedge check`'s Modbus group: is every configured device answering?

Devices are read for real: through the running agent when there is one (one bus,
one owner: a second master on an RS-485 line would garble both), through a driver
built here from the config when there is not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cityedge.drivers.modbus.config import Section
from cityedge.sdk.checks import (
    AgentError,
    CheckEnv,
    CheckResult,
    RunningAgent,
    fail,
    failure_text,
    ok,
)
from cityedge.sdk.driver import Driver
from cityedge.sdk.model import DeviceError

if TYPE_CHECKING:
    from cityedge.drivers.modbus.driver import ModbusDriver

PARALLEL_READS = 8


async def checks(sections: Sequence[Section], ctx: CheckEnv) -> list[CheckResult]:
    if not sections:
        return []
    from cityedge.drivers.modbus import build

    agent = await ctx.agent()
    targets = _targets(sections)
    gate = asyncio.Semaphore(PARALLEL_READS)
    if agent is not None:
        running = agent

        async def through_agent(device: str, point: str, key: str) -> CheckResult:
            async with gate:
                return await _read_via_agent(running, device, point, key, ctx.device_timeout)

        return list(await asyncio.gather(*(through_agent(*t[1:]) for t in targets)))
    results: list[CheckResult] = []
    for i, section in enumerate(sections):
        if not section.enabled:
            continue
        driver = build(section, ctx.env)

        async def directly(
            device: str, point: str, key: str, driver: ModbusDriver = driver
        ) -> CheckResult:
            async with gate:
                return await _read_directly(driver, device, point, key, ctx.device_timeout)

        try:
            mine = [t for t in targets if t[0] == i]
            results += await asyncio.gather(*(directly(*t[1:]) for t in mine))
        finally:
            await driver.aclose()
    return results


def _targets(sections: Sequence[Section]) -> list[tuple[int, str, str, str]]:
    """(section index, device, first point, where it is configured) of every device."""
    targets = []
    for i, section in enumerate(sections):
        if not section.enabled:
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
    driver: Driver, device: str, point: str, where: str, timeout: float
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
    agent: RunningAgent, device: str, point: str, where: str, timeout: float
) -> CheckResult:
    started = time.perf_counter()
    try:
        data: Any = await agent.ask(
            "read", device=device, points=[point] if point else None, timeout=timeout
        )
    except AgentError as exc:
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
