"""Checks of the gateway itself: config, keys, clock, disk, outbox."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from pathlib import Path

from cityedge.gateway.config import ConfigError, load_config
from cityedge.gateway.credentials import gateway_key_path, unit_credential
from cityedge.gateway.diagnostics.context import CheckContext
from cityedge.gateway.diagnostics.outbox_file import OutboxFileError, quick_check
from cityedge.protocol.key_files import load_signing_key
from cityedge.protocol.keys import KeyFileError
from cityedge.sdk.checks import CheckResult, fail, ok, warn


async def check_config(ctx: CheckContext) -> list[CheckResult]:
    from cityedge.gateway.validation import validate_file

    try:  # the very validation `cityedge run` makes
        checked = await asyncio.to_thread(validate_file, ctx.config_path)
    except ConfigError as err:
        try:  # `run` refuses it; if its tables are sound, the other checks still look
            ctx.loaded = await asyncio.to_thread(load_config, ctx.config_path)
            skipped = ""
        except ConfigError:
            ctx.loaded, skipped = None, " (checks that need the config were skipped)"
        shown = "; ".join(err.problems[:3]) + (" …" if len(err.problems) > 3 else "")
        return [
            fail(
                "config",
                f"{ctx.config_path}: {shown}{skipped}",
                f"fix the key(s) named; `cityedge config check {ctx.config_path}` lists every "
                "problem",
            )
        ]
    ctx.loaded = checked.loaded
    cfg = ctx.loaded.config
    devices = sum(len(getattr(s, "devices", []) or []) for _, s in cfg.driver_sections())
    results = [
        ok(
            "config",
            f"{ctx.config_path}: gateway {cfg.gateway.id} at {cfg.gateway.site}, "
            f"{len(cfg.driver_sections())} driver section(s), {devices} device(s)",
        )
    ]
    for warning in checked.warnings:
        key, _, why = warning.partition(": ")
        results.append(warn("config", f"{key}: {why}", f"reconsider {key} in {ctx.config_path}"))
    return results


async def check_keys(ctx: CheckContext) -> list[CheckResult]:
    cfg = ctx.config
    if cfg is None:
        return []
    results: list[CheckResult] = []
    path = gateway_key_path(cfg.signing_key_path)
    where = " (the unit's credential)" if path == unit_credential() else ""
    try:
        key = await asyncio.to_thread(load_signing_key, path)
    except KeyFileError as err:
        remedy = err.remedy or f"restore the gateway key at {path} (mode 0600, owner cityedge)"
        if not path.exists():  # one key per gateway: restore it rather than make another
            remedy = (
                f"no key at {path} nor at {unit_credential()} (the unit's LoadCredential=): "
                "restore the enrolled key from its backup there; only a new gateway gets a "
                f"new one (`cityedge keys init --out {unit_credential()}`, then enrol it)"
            )
        results.append(fail("keys.signing", f"{err.where}: {err.problem}", remedy))
    else:
        results.append(ok("keys.signing", f"{path}{where}: key id {key.key_id}, mode 0600"))
    if cfg.uplink.key_file is not None:
        results.append(_secret_file("keys.tls", cfg.uplink.key_file, "TLS private key"))
    if cfg.uplink.password_file is not None:
        results.append(_secret_file("keys.password", cfg.uplink.password_file, "broker password"))
    return results


def _secret_file(name: str, path: Path, what: str) -> CheckResult:
    """Present, a regular file, and nobody but its owner (and group) can read it."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return fail(name, f"{path}: no such file ({what})", f"install the {what} at {path}")
    except OSError as exc:
        return fail(name, f"{path}: {exc.strerror}", f"check the permissions of {path.parent}")
    if not stat.S_ISREG(st.st_mode):
        return fail(name, f"{path}: not a regular file", f"{path} must be the {what} file itself")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o007:
        return fail(
            name,
            f"{path}: mode {mode:04o} lets every user read the {what}",
            f"run `chmod 600 {path}` (and replace it if others could have copied it)",
        )
    if mode & 0o070:
        return warn(
            name,
            f"{path}: mode {mode:04o}: the file's group can read the {what}",
            f"run `chmod 600 {path}` unless the group is the agent's own",
        )
    if not os.access(path, os.R_OK):
        return fail(name, f"{path}: not readable by this user", "run the check as the agent's user")
    return ok(name, f"{path}: mode {mode:04o}")


async def check_clock(ctx: CheckContext) -> list[CheckResult]:
    state = await asyncio.to_thread(ctx.clock)
    where = f"{state.source}" + (f": {state.detail}" if state.detail else "")
    if state.synchronised is True:
        return [ok("clock", f"synchronised ({where})")]
    if state.synchronised is False:
        return [
            fail(
                "clock",
                f"not synchronised ({where}); readings are marked clock-unsynced",
                "enable NTP (`timedatectl set-ntp true`) and let UDP port 123 through to the "
                "time server; check `timedatectl timesync-status`",
            )
        ]
    return [
        warn(
            "clock",
            f"cannot tell whether the clock is synchronised ({where})",
            "install and enable systemd-timesyncd or chrony",
        )
    ]


async def check_disk(ctx: CheckContext) -> list[CheckResult]:
    cfg = ctx.config
    if cfg is None:
        return []
    where = cfg.gateway.state_dir
    probe = where
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent  # state dir not created yet: its filesystem is its parent's
    usage = shutil.disk_usage(probe)
    share = usage.free / usage.total if usage.total else 0.0
    detail = f"{where}: {share:.1%} free ({_mib(usage.free)} of {_mib(usage.total)})"
    remedy = (
        f"free space on the filesystem of {where} (old logs: `journalctl --vacuum-size=50M`); "
        "when full, the outbox evicts the oldest telemetry first"
    )
    if share < ctx.disk_fail:
        return [fail("disk", detail + f", below {ctx.disk_fail:.0%}", remedy)]
    if share < ctx.disk_warn:
        return [warn("disk", detail + f", below {ctx.disk_warn:.0%}", remedy)]
    return [ok("disk", detail)]


async def check_outbox(ctx: CheckContext) -> list[CheckResult]:
    cfg = ctx.config
    if cfg is None:
        return []
    path = cfg.outbox_path
    results: list[CheckResult] = []
    if not path.exists():
        results.append(
            warn(
                "outbox",
                f"{path}: no outbox yet",
                f"the agent creates it at its first start; check that {path.parent} is writable",
            )
        )
    else:
        try:
            verdict = await asyncio.to_thread(quick_check, path)
        except OutboxFileError as exc:
            verdict = f"cannot open: {exc}"
        if verdict == "ok":
            results.append(ok("outbox", f"{path}: integrity ok ({_mib(path.stat().st_size)})"))
        else:
            results.append(
                fail(
                    "outbox",
                    f"{path}: {verdict}",
                    "stop the agent and restart it: it sets a damaged store aside (kept for the "
                    "post-mortem) and starts a fresh one; send a support bundle",
                )
            )
    aside = sorted(path.parent.glob(f"{path.name}.corrupt-*")) if path.parent.exists() else []
    aside = [p for p in aside if not p.name.endswith(("-wal", "-shm"))]
    if aside:
        results.append(
            warn(
                "outbox.set_aside",
                f"{len(aside)} damaged store(s) set aside, latest {aside[-1].name}",
                "send them with a support bundle for the post-mortem, then delete them",
            )
        )
    return results


def _mib(n: int) -> str:
    return f"{n / 1048576:.0f} MiB" if n >= 1048576 else f"{n / 1024:.0f} KiB"
