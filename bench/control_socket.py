"""What a technician's request costs the agent: the control socket and the maintenance page.

A real agent (in this process) with simulated lamppost controllers polled every
second; the CLI's pattern is measured: one connection per request. Figures:

- `status` and `devices` answers per second over the control socket, against a
  bare asyncio Unix-socket JSON echo (connect, one line each way, close): the
  ratio is what building the answer adds to the transport;
- `/metrics` and `/` scrapes per second from the maintenance page, against its
  own `/healthz` (same responder, nothing to render);
- the answer sizes.

Not a test: no assertion, just numbers (the machine is shared and noisy).

    .venv/bin/python bench/control_socket.py [--devices 50] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cityedge.gateway.config import load_config
from cityedge.gateway.control.server import ControlServer
from cityedge.gateway.diagnostics.clock import fixed_clock
from cityedge.gateway.maintenance import MaintenancePage
from cityedge.gateway.runtime import Agent
from cityedge.protocol.key_files import create_key
from cityedge.street.broker import free_port
from cityedge.street.modbus import ModbusStreet
from tests.support.agent_process import to_toml


async def rate(call: Callable[[], Awaitable[int]], seconds: float) -> tuple[float, int]:
    """Calls per second over `seconds`, and the size of the last answer."""
    await call()  # warm up
    done, size = 0, 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        size = await call()
        done += 1
    return done / (time.perf_counter() - started), size


async def unix_request(path: Path, line: bytes) -> int:
    reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 24)
    writer.write(line)
    answer = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    await writer.wait_closed()
    return len(answer)


async def http_get(port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    return len(data)


async def echo_server(path: Path) -> asyncio.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        json.loads(line)
        writer.write(json.dumps({"ok": True, "data": None}).encode() + b"\n")
        await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(echo, path=str(path))


async def main(devices: int, seconds: float) -> None:
    work = Path(tempfile.mkdtemp(prefix="ce-bench-"))
    create_key(work / "state" / "keys" / "gateway.key")
    async with ModbusStreet(lampposts=devices, meters=0) as street:
        doc = {
            "gateway": {"id": "gw-bench", "site": "bench", "state_dir": str(work / "state")},
            "uplink": {"port": free_port(), "reconnect_min": 5.0},  # no broker: stays down
            "logging": {"level": "error"},
            "control": {"socket": str(work / "c.sock")},
            "drivers": {"modbus": [street.driver_tables(name="street", poll_interval=1.0)]},
        }
        (work / "agent.toml").write_text(to_toml(doc))
        agent = Agent(load_config(work / "agent.toml"))
        server = ControlServer(agent, clock=fixed_clock(True))
        page = MaintenancePage(agent, "127.0.0.1:0", control=server)
        tasks = [asyncio.create_task(t) for t in (agent.run(), server.run(), page.run())]
        echo = await echo_server(work / "echo.sock")
        try:
            await asyncio.wait_for(server.listening.wait(), 10)
            await asyncio.wait_for(page.listening.wait(), 10)
            await asyncio.sleep(2.5)  # every device polled at least twice
            assert page.bound_port is not None
            port = page.bound_port
            baseline, _ = await rate(
                lambda: unix_request(work / "echo.sock", b'{"op": "status"}\n'), seconds
            )
            print(f"{devices} devices polled every 1 s; one connection per request\n")
            print(f"{'request':<28}{'per s':>10}{'bytes':>10}{'vs baseline':>14}")
            print(f"{'echo (baseline)':<28}{baseline:>10.0f}{'':>10}{1.0:>14.2f}")
            for op in ("ping", "status", "devices"):
                line = json.dumps({"op": op}).encode() + b"\n"
                per_s, size = await rate(partial(unix_request, server.path, line), seconds)
                print(f"{'socket ' + op:<28}{per_s:>10.0f}{size:>10}{per_s / baseline:>14.2f}")
            health, _ = await rate(lambda: http_get(port, "/healthz"), seconds)
            print(f"{'GET /healthz (baseline)':<28}{health:>10.0f}{'':>10}{1.0:>14.2f}")
            for path in ("/metrics", "/"):
                per_s, size = await rate(partial(http_get, port, path), seconds)
                print(f"{'GET ' + path:<28}{per_s:>10.0f}{size:>10}{per_s / health:>14.2f}")
        finally:
            echo.close()
            agent.stop()
            await asyncio.wait_for(asyncio.gather(tasks[0], return_exceptions=True), 30)
            for task in tasks[1:]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    asyncio.run(main(args.devices, args.seconds))
