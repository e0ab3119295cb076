"""The agent as a service: sd_notify, clean stop, supervision, the demo street."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cityedge.gateway.supervisor import TaskHealth, supervise
from cityedge.protocol.keys import SigningKey
from cityedge.street.broker import Broker
from cityedge.street.modbus import ModbusStreet
from tests.integration.conftest import ConfigWriter
from tests.support.agent_process import ROOT, agent_env
from tests.support.demo import demo_config


async def test_sd_notify_ready_watchdog_stopping(
    tmp_path: Path, broker: Broker, gateway_key: SigningKey, write_config: ConfigWriter
) -> None:
    async with ModbusStreet(lampposts=1, meters=0) as street:
        config = write_config(modbus=[street.driver_tables(name="street")])
        sock_path = tmp_path / "notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(sock_path))
        sock.setblocking(False)
        env = agent_env() | {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}
        with (tmp_path / "agent.log").open("wb") as log:
            proc = subprocess.Popen(  # noqa: ASYNC220 (starting it is instant)
                [sys.executable, "-m", "cityedge.cli", "run", "-c", str(config)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        received: list[str] = []
        loop = asyncio.get_running_loop()
        try:
            for _ in range(100):
                with contextlib.suppress(TimeoutError):
                    received.append(
                        (await asyncio.wait_for(loop.sock_recv(sock, 4096), 0.2)).decode()
                    )
                if any("READY=1" in m for m in received) and received.count("WATCHDOG=1") >= 2:
                    break
            proc.send_signal(signal.SIGTERM)
            for _ in range(50):
                with contextlib.suppress(TimeoutError):
                    received.append(
                        (await asyncio.wait_for(loop.sock_recv(sock, 4096), 0.2)).decode()
                    )
                if "STOPPING=1" in received:
                    break
            assert await asyncio.to_thread(proc.wait, 20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            sock.close()
        assert any(m.startswith("READY=1") for m in received), received
        assert received.count("WATCHDOG=1") >= 2, received
        assert "STOPPING=1" in received


async def test_a_failing_task_is_restarted_with_the_reason_kept() -> None:
    calls = 0
    settled = asyncio.Event()

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise OSError(f"serial port gone ({calls})")
        settled.set()
        await asyncio.sleep(3600)

    health = TaskHealth("flaky")
    task = asyncio.create_task(supervise("flaky", flaky, health, min_delay=0.01, max_delay=0.05))
    await asyncio.wait_for(settled.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert health.restarts == 2
    assert health.last_error == "OSError: serial port gone (2)"


def test_demo_street_shows_verified_readings(tmp_path: Path) -> None:
    if os.environ.get("CITYEDGE_SKIP_DEMO"):
        pytest.skip("CITYEDGE_SKIP_DEMO set")
    config = demo_config(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "cityedge.cli", "demo", "-c", str(config), "--duration", "8",
         "--log"],  # every line, as the command post's console prints them
        cwd=ROOT, env=agent_env(), capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert re.search(r"lamppost-00\d\.\w+ = ", out), out[-3000:]
    assert re.search(r"bin-0042\.fill = ", out), out[-3000:]  # LoRaWAN, decoded at the edge
    accepted = re.search(r"(\d+) accepted", out)
    assert accepted and int(accepted.group(1)) > 0, out[-3000:]
    assert "REJECTED" not in out
    assert "state offline" in out  # the agent stopped cleanly and said so
