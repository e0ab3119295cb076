"""`cityedge support-bundle`: one .tar.gz a maintenance crew can mail to the developers.

What goes in: versions (Python, packages), the config with secrets redacted,
recent logs (journald, else a log file), the check results, outbox statistics
and device health (from the running agent when there is one). What never goes
in: a private key or a password. The password file is never opened, key files
are never read, and every member is scrubbed of PEM private-key blocks and
checked once more before it is written.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from cityedge.gateway.control.protocol import ControlError
from cityedge.gateway.diagnostics.context import CheckContext
from cityedge.gateway.diagnostics.outbox_file import OutboxFileError, file_stats
from cityedge.gateway.diagnostics.redact import redact, scrub
from cityedge.gateway.diagnostics.runner import GROUPS, run_checks
from cityedge.sdk import __version__
from cityedge.sdk.checks import CheckResult

MAX_LOG_BYTES = 2 * 1024 * 1024
LOGS_DIRECTORY = Path("/var/log/cityedge")  # the unit's LogsDirectory=
JOURNAL_LINES = 5000
JOURNAL_TIMEOUT = 20.0
AGENT_VIEWS = ("status", "devices", "outbox", "overrides", "check.last")


@dataclass
class Bundle:
    """What was collected; `write` turns it into the archive."""

    members: dict[str, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add_text(self, name: str, text: str) -> None:
        self.members[name] = scrub(text).encode("utf-8", "replace")

    def add_json(self, name: str, data: Any) -> None:
        self.add_text(name, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")

    def write(self, path: Path) -> None:
        """Mode 0600 from the first byte: the bundle says a lot about the gateway."""
        for name, data in self.members.items():
            if b"PRIVATE KEY-----" in data:  # belt and braces: scrub() already ran
                raise RuntimeError(f"refusing to write {name}: it still holds a private key")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            now = time.time()
            root = path.name.removesuffix(".tar.gz")
            for name, data in sorted(self.members.items()):
                info = tarfile.TarInfo(f"{root}/{name}")
                info.size = len(data)
                info.mtime = int(now)
                info.mode = 0o600
                tar.addfile(info, io.BytesIO(data))


def default_name(gateway: str | None, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return f"cityedge-support-{gateway or 'unknown'}-{stamp}.tar.gz"


async def collect(
    ctx: CheckContext,
    *,
    checks: bool = True,
    log_file: Path | None = None,
    journal: Callable[[], str | None] | None = None,
) -> Bundle:
    bundle = Bundle()
    bundle.add_json("versions.json", versions())
    _config(bundle, ctx.config_path)
    groups = GROUPS if checks else ("config",)
    results: list[CheckResult] = await run_checks(ctx, groups)
    if checks:
        bundle.add_json("checks.json", [r.to_json() for r in results])
        bundle.add_text(
            "checks.txt",
            "".join(
                f"{r.status.mark} {r.name}: {r.detail}\n"
                + (f"    → {r.remedy}\n" if r.remedy else "")
                for r in results
            ),
        )
    await _agent_views(bundle, ctx)
    _logs(bundle, log_file, journal or journal_text)
    bundle.add_json(
        "manifest.json",
        {
            "created": time.time(),
            "host": socket.gethostname(),
            "cityedge": __version__,
            "config": str(ctx.config_path),
            "members": sorted(bundle.members),
            "problems": bundle.problems,
        },
    )
    return bundle


def versions() -> dict[str, Any]:
    packages = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            packages[name] = dist.version
    return {
        "cityedge": __version__,
        "python": sys.version,
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": dict(sorted(packages.items(), key=lambda kv: kv[0].lower())),
    }


def _config(bundle: Bundle, path: Path) -> None:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        bundle.problems.append(f"config {path}: cannot read: {exc.strerror}")
        return
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        # the parser's message quotes no values, only where it stopped
        bundle.problems.append(f"config {path}: not valid TOML: {exc}")
        return
    bundle.add_json("config.redacted.json", redact(raw))


async def _agent_views(bundle: Bundle, ctx: CheckContext) -> None:
    agent = await ctx.running_agent()
    if agent is None:
        bundle.problems.append("agent not running: status and device health not included")
        if ctx.config is not None:
            try:
                bundle.add_json("outbox.json", file_stats(ctx.config.outbox_path))
            except OutboxFileError as exc:
                bundle.problems.append(f"outbox: {exc}")
        return
    for view in AGENT_VIEWS:
        try:
            data = await asyncio.to_thread(agent.call, view)
        except ControlError as exc:
            bundle.problems.append(f"agent {view}: {exc}")
            continue
        bundle.add_json(f"agent/{view.replace('.', '-')}.json", data)


def journal_text() -> str | None:
    binary = shutil.which("journalctl")
    if binary is None:
        return None
    try:
        done = subprocess.run(
            [binary, "-u", "cityedge", "--no-pager", "-o", "short-iso", "-n", str(JOURNAL_LINES)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=JOURNAL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = done.stdout.strip()
    if done.returncode != 0 or not text or text == "-- No entries --":
        return None
    return done.stdout


def newest_log(directory: Path) -> Path | None:
    try:
        logs = [p for p in directory.glob("*.log") if p.is_file()]
    except OSError:
        return None
    return max(logs, key=lambda p: p.stat().st_mtime, default=None)


def _logs(bundle: Bundle, log_file: Path | None, journal: Callable[[], str | None]) -> None:
    text = journal()
    if text is not None:
        bundle.add_text("logs/journal.txt", text[-MAX_LOG_BYTES:])
        return
    if log_file is None:
        log_file = newest_log(LOGS_DIRECTORY)
    if log_file is None:
        bundle.problems.append("no logs: journald has none for cityedge and no --log-file given")
        return
    try:
        with log_file.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - MAX_LOG_BYTES))
            tail = f.read(MAX_LOG_BYTES)
    except OSError as exc:
        bundle.problems.append(f"log file {log_file}: {exc.strerror}")
        return
    bundle.add_text(f"logs/{log_file.name}", tail.decode("utf-8", "replace"))
