"""The technicians' site (street, broker, agent) for the CLI tests, and a way to run the
real `cityedge` on a terminal of a given width (a pty) or piped."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

from tests.support.agent_process import ROOT, agent_env
from tests.technician.conftest import site  # noqa: F401  (the fixture, module-wide)


def piped(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`cityedge ARGS | cat`: stdout is a pipe, COLUMNS=80 as over a small ssh window."""
    environment = {k: v for k, v in agent_env().items() if k != "CITYEDGE_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "cityedge.cli", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**environment, "COLUMNS": "80", **(env or {})},
    )  # fmt: skip


def on_terminal(*args: str, columns: int = 80, timeout: float = 60) -> tuple[int, str]:
    """Run the CLI with stdout on a pty `columns` wide; its exit status and its screen."""
    main, secondary = pty.openpty()
    environment = {k: v for k, v in agent_env().items() if k != "CITYEDGE_CONFIG"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cityedge.cli", *args],
        stdout=secondary, stderr=secondary, stdin=subprocess.DEVNULL, cwd=ROOT,
        env={**environment, "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm"},
    )  # fmt: skip
    os.close(secondary)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                try:
                    data = os.read(main, 65536)
                except OSError:  # the child closed the pty
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    return code, b"".join(chunks).decode("utf-8", "replace")
