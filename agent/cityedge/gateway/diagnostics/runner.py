"""`cityedge check`: the checks, in order, as data; run them and keep the worst status.

A check is a small async function `(CheckContext) -> list[CheckResult]`;
groups can be chosen (`--only broker`) or left out (`--skip clock`). A check
that crashes or hangs becomes a ✘ of its own, never a traceback. The gateway's
own groups come first; then each driver that has a `checks` module is a group
named after its kind, run in the order the config names the drivers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence

import structlog

from cityedge.gateway.diagnostics.agent import check_agent
from cityedge.gateway.diagnostics.broker import check_broker, check_certificates
from cityedge.gateway.diagnostics.context import CheckContext
from cityedge.gateway.diagnostics.field import check_serial_ports, driver_group
from cityedge.gateway.diagnostics.local import (
    check_clock,
    check_config,
    check_disk,
    check_keys,
    check_outbox,
)
from cityedge.gateway.registry import check_kinds
from cityedge.sdk.checks import CheckResult, fail

log = structlog.get_logger(__name__)

Check = Callable[[CheckContext], Awaitable[list[CheckResult]]]

CHECKS: tuple[tuple[str, Check], ...] = (
    ("agent", check_agent),  # first: every answer below reads differently without it
    ("config", check_config),
    ("keys", check_keys),
    ("clock", check_clock),
    ("disk", check_disk),
    ("outbox", check_outbox),
    ("broker", check_broker),
    ("certificates", check_certificates),
    ("serial", check_serial_ports),
)
DRIVER_GROUPS = tuple(check_kinds())
GROUPS = (*(name for name, _ in CHECKS), *DRIVER_GROUPS)


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


def driver_checks_in_config_order(ctx: CheckContext) -> list[tuple[str, Check]]:
    """The drivers' groups, those the config names first and in its order."""
    named = list(ctx.config.drivers) if ctx.config is not None else []
    order = [k for k in named if k in DRIVER_GROUPS]
    order += [k for k in DRIVER_GROUPS if k not in order]
    return [(kind, driver_group(kind)) for kind in order]


async def run_checks(
    ctx: CheckContext,
    groups: Sequence[str] = GROUPS,
    checks: Sequence[tuple[str, Check]] | None = None,
) -> list[CheckResult]:
    """Run `groups` of `checks` (default: the gateway's, then the drivers')."""
    results: list[CheckResult] = []
    for name, check in checks or CHECKS:
        results += await _run_group(ctx, groups, name, check)
    if checks is None:  # after the config check: its order is the config's
        for name, check in driver_checks_in_config_order(ctx):
            results += await _run_group(ctx, groups, name, check)
    return results


async def _run_group(
    ctx: CheckContext, groups: Sequence[str], name: str, check: Check
) -> list[CheckResult]:
    if name == "config" and name not in groups:
        await check(ctx)  # the others need the config, even when its line is not wanted
        return []
    if name not in groups:
        return []
    try:
        async with asyncio.timeout(ctx.group_timeout):
            return await check(ctx)
    except TimeoutError:
        return [
            fail(
                name,
                f"the {name} checks did not finish within {ctx.group_timeout:g} s",
                "run `cityedge check --only " + name + "` again; send a support bundle",
            )
        ]
    except Exception as exc:  # one broken check must not hide the others' results
        log.exception("check.crashed", group=name)
        return [
            fail(
                name,
                f"the {name} check crashed: {type(exc).__name__}: {exc}",
                "please report it with `cityedge support-bundle`",
            )
        ]
