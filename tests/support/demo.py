"""The shipped demo config made safe for a test: free loopback ports and a state dir
of the test's own, so no test meets a running demo nor the checkout's .demo-state."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from tests.support.agent_process import ROOT


def free_run(count: int, kind: int = socket.SOCK_STREAM) -> int:
    """The first of `count` consecutive free loopback ports (the demo's lampposts and
    meter sit on consecutive ports): a random base, checked port by port."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count >= 65535:
            continue
        try:
            with contextlib.ExitStack() as held:
                for port in range(base, base + count):
                    sock = held.enter_context(socket.socket(socket.AF_INET, kind))
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError(f"no run of {count} free ports")


def demo_config(tmp_path: Path) -> Path:
    """config/demo.toml on free ports, with its state in `tmp_path`: the test never
    meets a running demo, nor the checkout's .demo-state."""
    text = (ROOT / "config" / "demo.toml").read_text()
    state = tmp_path / "state"
    text = text.replace('"../.demo-state', f'"{state}')  # the state dir and the files in it
    text = text.replace("port = 18830", f"port = {free_run(1)}")
    text = text.replace("port = 17000", f"port = {free_run(1, socket.SOCK_DGRAM)}")
    base = free_run(9)
    for i in range(9):  # eight lampposts and the cabinet meter, consecutive
        text = text.replace(f"port = {15021 + i}\n", f"port = {base + i}\n")
    assert '"../.demo-state' not in text and "= 15021" not in text
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "demo.toml"
    path.write_text(text)
    return path
