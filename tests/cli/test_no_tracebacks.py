"""Mistakes in the field end in one clear line, never a traceback: the maintenance port
already taken, a second demo, a negative duration."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cityedge.protocol.key_files import create_key
from cityedge.street.broker import free_port
from tests.cli.conftest import piped
from tests.support.agent_process import ROOT, agent_env, to_toml
from tests.support.demo import demo_config
from tests.technician.site import TechnicianAgent, remove, short_dir, wait_until


def logged(agent: TechnicianAgent) -> list[dict[str, object]]:
    out = []
    for line in agent.logs().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def page_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def test_maintenance_port_in_use_is_one_line_and_the_agent_runs_on(tmp_path: Path) -> None:
    sockets = short_dir()
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    create_key(tmp_path / "state" / "keys" / "gateway.key")
    config = tmp_path / "agent.toml"
    config.write_text(to_toml({
        "gateway": {"id": "gw-busy", "site": "s", "state_dir": str(tmp_path / "state")},
        "uplink": {"host": "127.0.0.1", "port": free_port(), "reconnect_max": 1.0},
        "logging": {"level": "info", "format": "json"},
        "control": {"socket": str(sockets / "control.sock"),
                    "maintenance_address": f"127.0.0.1:{port}"},
    }))  # fmt: skip
    try:
        with TechnicianAgent(config, sockets / "control.sock") as agent:

            def said() -> bool:
                return any(e.get("event") == "maintenance.unavailable" for e in logged(agent))

            assert wait_until(said, 30), agent.logs()[-3000:]
            # a few retries pass (the first ones come within seconds)
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline and agent.running():
                time.sleep(0.5)
            assert agent.running()
            events = logged(agent)
            unavailable = [e for e in events if e.get("event") == "maintenance.unavailable"]
            assert len(unavailable) == 1, unavailable  # once, not once per retry
            assert unavailable[0]["address"] == f"127.0.0.1:{port}"
            assert "in use" in str(unavailable[0]["error"])
            assert "control.maintenance_address" in str(unavailable[0]["remedy"])
            assert "Traceback" not in agent.logs()
            assert not [e for e in events if e.get("event") in ("task.failed", "task.restart")]
            status = piped("status", "--json", "--socket", str(sockets / "control.sock"))
            assert status.returncode == 0, status.stderr  # the agent serves on, page or not

            squatter.close()  # the port is free again: the page comes up by itself
            assert wait_until(lambda: page_answers(port), 90), agent.logs()[-2000:]
    finally:
        squatter.close()
        remove(sockets)


def test_a_second_demo_refuses_cleanly_and_leaves_the_first_alone(tmp_path: Path) -> None:
    demo = demo_config(tmp_path)  # free ports, its state in tmp_path/state
    state = tmp_path / "state"
    with (tmp_path / "first-demo.log").open("wb") as log:
        first = subprocess.Popen(
            [sys.executable, "-m", "cityedge.cli", "demo", "-c", str(demo), "--duration", "120"],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=agent_env(),
        )  # fmt: skip
    try:
        assert wait_until(lambda: any(state.glob("lorawan-*.db")), 60)
        counters = {p: p.stat().st_ino for p in state.glob("lorawan-*.db")}
        second = piped("demo", "-c", str(demo), "--duration", "5")
        assert second.returncode == 1, second.stdout + second.stderr
        assert "a demo is already running" in second.stderr
        assert f"pid {first.pid}" in second.stderr
        assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
        # the first demo may open more counters meanwhile; none of those it had is gone or new
        assert {p: p.stat().st_ino for p in counters if p.exists()} == counters
        assert first.poll() is None  # the first demo runs on
    finally:
        first.terminate()
        first.wait(60)
    assert not (state / "demo.lock").exists() or _free_lock(state / "demo.lock")


def _free_lock(path: Path) -> bool:
    """A lock file left behind is fine as long as nobody holds it."""
    import fcntl

    with path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
    return True


def test_a_negative_duration_is_refused(tmp_path: Path) -> None:
    done = piped("demo", "-c", str(demo_config(tmp_path)), "--duration", "-5")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--duration" in done.stderr
    assert "Traceback" not in done.stderr
