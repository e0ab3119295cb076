"""The first thing `cityedge check` says: is the agent running?

Its control socket answering is the agent's own word; the process id comes from
the socket's peer credentials, the version and uptime from its status.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from pathlib import Path

from cityedge.gateway.config import ConfigError
from cityedge.gateway.control.protocol import ControlError
from cityedge.gateway.diagnostics.context import CheckContext
from cityedge.sdk.checks import CheckResult, ok, warn


def socket_peer_pid(path: Path, timeout: float = 2.0) -> int | None:
    """The pid of the process listening on a unix socket (SO_PEERCRED), if any answers."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid, _, _ = struct.unpack("3i", raw)
    return pid if pid > 0 else None


async def check_agent(ctx: CheckContext) -> list[CheckResult]:
    from cityedge.gateway.config import load_config
    from cityedge.gateway.control.values import format_duration

    if ctx.socket is None and ctx.loaded is None:
        # The control socket's path is in the config; the `config` check reports its problems.
        with contextlib.suppress(ConfigError):
            ctx.loaded = await asyncio.to_thread(load_config, ctx.config_path)
    path = ctx.socket_path()
    if path is None:
        return [warn("agent", "cannot tell: the config names no control socket (see config)",
                     "fix the config, or pass --socket PATH")]  # fmt: skip
    client = await ctx.running_agent()
    if client is None:
        return [
            warn(
                "agent",
                f"not running: nothing answers on {path}; the checks below read the files only",
                "start it (`systemctl start cityedge`); why it stopped: "
                "`systemctl status cityedge` and `journalctl -u cityedge -n 50`",
            )
        ]
    pid = await asyncio.to_thread(socket_peer_pid, path)
    detail = f"running: {path} answers" + (f", pid {pid}" if pid else "")
    try:
        status = await asyncio.to_thread(client.call, "status")
        detail += f", cityedge {status['version']}, up {format_duration(status['uptime'])}"
    except (ControlError, KeyError, TypeError):
        pass  # it answered a ping: running is the verdict that matters here
    return [ok("agent", detail)]
