"""`cityedge check`: the checks, in order, as data; run them and keep the worst status.

A check is a small async function `(CheckContext) -> list[CheckResult]`;
groups can be chosen (`--only broker`) or left out (`--skip clock`). A check
that crashes or hangs becomes a ✘ of its own, never a traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence

import structlog

from cityedge.gateway.diagnostics.broker import check_broker, check_certificates
from cityedge.gateway.diagnostics.context import CheckContext
from cityedge.gateway.diagnostics.field import (
    check_ble_adapters,
    check_forwarder,
    check_modbus_devices,
    check_serial_ports,
)
from cityedge.gateway.diagnostics.local import (
    check_clock,
    check_config,
    check_disk,
    check_keys,
    check_outbox,
)
from cityedge.gateway.diagnostics.results import CheckResult, fail

log = structlog.get_logger(__name__)

Check = Callable[[CheckContext], Awaitable[list[CheckResult]]]

CHECKS: tuple[tuple[str, Check], ...] = (
    ("config", check_config),
    ("keys", check_keys),
    ("clock", check_clock),
    ("disk", check_disk),
    ("outbox", check_outbox),
    ("broker", check_broker),
    ("certificates", check_certificates),
    ("serial", check_serial_ports),
    ("modbus", check_modbus_devices),
    ("lorawan", check_forwarder),
    ("ble", check_ble_adapters),
)
GROUPS = tuple(name for name, _ in CHECKS)


class UnknownGroup(ValueError):
    pass


def selected(only: Iterable[str] = (), skip: Iterable[str] = ()) -> list[str]:
    only, skip = list(only), list(skip)
    unknown = sorted({g for g in [*only, *skip] if g not in GROUPS})
    if unknown:
        raise UnknownGroup(
            f"unknown check group(s) {', '.join(unknown)}; groups: {', '.join(GROUPS)}"
        )
    return [g for g in GROUPS if (not only or g in only) and g not in skip]


async def run_checks(
    ctx: CheckContext,
    groups: Sequence[str] = GROUPS,
    checks: Sequence[tuple[str, Check]] = CHECKS,
) -> list[CheckResult]:
    results: list[CheckResult] = []
    for name, check in checks:
        if name == "config" and name not in groups:
            await check(ctx)  # the others need the config, even when its line is not wanted
            continue
        if name not in groups:
            continue
        try:
            async with asyncio.timeout(ctx.group_timeout):
                results += await check(ctx)
        except TimeoutError:
            results.append(
                fail(
                    name,
                    f"the {name} checks did not finish within {ctx.group_timeout:g} s",
                    "run `cityedge check --only " + name + "` again; send a support bundle",
                )
            )
        except Exception as exc:  # one broken check must not hide the others' results
            log.exception("check.crashed", group=name)
            results.append(
                fail(
                    name,
                    f"the {name} check crashed: {type(exc).__name__}: {exc}",
                    "please report it with `cityedge support-bundle`",
                )
            )
    return results
