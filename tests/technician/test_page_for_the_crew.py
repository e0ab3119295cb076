"""The maintenance page as a crew in the rain reads it, in a real headless Chromium at a
phone's size (390×844) and a laptop's (1280×800): a verdict first, problem devices
first, each down device's reason in words and on screen without scrolling sideways,
and a check that no longer holds marked stale.

Screenshots go to test-artifacts/ (git-ignored); their paths are printed."""

from __future__ import annotations

import asyncio
import html
import re
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cityedge.gateway.config import load_config
from cityedge.gateway.control.server import ControlServer
from cityedge.gateway.diagnostics.clock import fixed_clock
from cityedge.gateway.diagnostics.record import CheckRecord
from cityedge.gateway.maintenance import MaintenancePage
from cityedge.gateway.runtime import Agent
from cityedge.protocol.key_files import create_key
from cityedge.street.broker import Broker, free_port
from cityedge.street.modbus import ModbusStreet
from tests.support.agent_process import ROOT
from tests.technician.browser import Browser
from tests.technician.site import remove, short_dir, write_config

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SIZES = [(390, 844), (1280, 800)]
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

MEASURE = """(() => {
  const out = {scrollWidth: document.documentElement.scrollWidth,
               clientWidth: document.documentElement.clientWidth, boxes: {}};
  for (const el of document.querySelectorAll('#verdict, #devices .why')) {
    const r = el.getBoundingClientRect();
    out.boxes[el.id || el.closest('li').id] = [r.left, r.right, r.top, r.bottom];
  }
  return out;
})()"""


@dataclass
class Street:
    street: ModbusStreet
    agent: Agent
    page: MaintenancePage
    server: ControlServer


@pytest.fixture
async def street(tmp_path: Path) -> AsyncIterator[Street]:
    """Three lampposts on the street and a fourth whose cable was never connected."""
    sockets = short_dir()
    try:
        async with ModbusStreet(lampposts=3, meters=0) as street:
            with Broker(workdir=tmp_path / "broker") as broker:
                create_key(tmp_path / "state" / "keys" / "gateway.key")
                tables = street.driver_tables(name="street", poll_interval=0.5, timeout=0.5)
                tables["devices"].append({"name": "lamppost-104", "profile": "lamppost",
                                          "host": "127.0.0.1", "port": free_port(),
                                          "poll_interval": 0.5, "timeout": 0.5})  # fmt: skip
                config = write_config(tmp_path, broker_port=broker.port,
                                      socket=sockets / "control.sock", modbus=[tables],
                                      logging={"format": "console"})  # fmt: skip
                agent = Agent(load_config(config))
                server = ControlServer(agent, clock=fixed_clock(True, "test clock"))
                page = MaintenancePage(agent, "127.0.0.1:0", control=server)
                # the runtime serves the control socket itself; `server` only keeps the
                # last check and the clock for the page
                tasks = [asyncio.create_task(agent.run()), asyncio.create_task(page.run())]
                try:
                    await asyncio.wait_for(page.listening.wait(), 10)
                    yield Street(street, agent, page, server)
                finally:
                    broker.stop()
                    agent.stop()
                    await asyncio.wait_for(asyncio.gather(tasks[0], return_exceptions=True), 20)
                    for task in tasks[1:]:
                        task.cancel()
                    await asyncio.gather(*tasks[1:], return_exceptions=True)
    finally:
        remove(sockets)


async def wait_for(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


def states(agent: Agent) -> dict[str, str]:
    return {h.device: str(h.state) for h in agent.device_health()}


def look(url: str, size: tuple[int, int], profile: Path, shot: Path) -> dict[str, Any]:
    """Open `url` at `size` (a phone's is emulated as a phone), measure, photograph."""
    assert CHROMIUM is not None
    browser = Browser(CHROMIUM, profile)
    try:
        browser.open(url, size[0], size[1], mobile=size[0] < 500)
        measured: dict[str, Any] = browser.evaluate(MEASURE)
        browser.screenshot(shot)
        return measured
    finally:
        browser.close()


async def fetch(port: int, path: str = "/") -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: gateway\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 15)
    writer.close()
    await writer.wait_closed()
    return data.partition(b"\r\n\r\n")[2].decode()


async def test_the_page_says_what_is_wrong_at_a_glance_on_a_phone_and_a_laptop(
    street: Street, tmp_path: Path
) -> None:
    agent = street.agent
    await wait_for(lambda: all(states(agent).get(f"lamppost-00{i}") == "up" for i in (1, 2, 3)))
    # a check that was fine, then the cable of lamppost-002 is cut
    street.server.last_check = CheckRecord.from_json({
        "ts": time.time() - 5, "user": "crew",
        "results": [{"name": "modbus.lamppost-002", "status": "ok",
                     "detail": "answered the running agent"}],
    })  # fmt: skip
    await street.street.switch_off("lamppost-002")
    await wait_for(lambda: states(agent)["lamppost-002"] == "down"
                   and states(agent)["lamppost-104"] == "down")  # fmt: skip

    body = await fetch(street.page.bound_port or 0)
    first = re.search(r"<p id=verdict class=fail>(.*?)</p>", body)
    assert first, body[:2000]
    verdict = html.unescape(first.group(1))
    assert verdict.startswith("2 of 4 devices down: lamppost-002 no answer since "), verdict
    assert "lamppost-104 never answered — check cable/power" in verdict
    assert body.index("id=verdict") < body.index("<h2>")  # the first thing on the page
    order = re.findall(r"<li id='device-([\w-]+)'", body)
    assert order[:2] == ["lamppost-002", "lamppost-104"]  # problem devices first
    assert "cannot connect (×" in body and "connection " not in body.replace("cannot connect", "")
    assert "(stale)" in body and "✔" not in body.split("Last check", 1)[1]
    assert "0 B" not in body and " rows" not in body

    # Measured by Chromium's own layout, on the page as the agent serves it.
    ARTIFACTS.mkdir(exist_ok=True)
    url = f"http://127.0.0.1:{street.page.bound_port}/"
    for width, height in SIZES:
        shot = ARTIFACTS / f"maintenance-page-{width}x{height}.png"
        shot.unlink(missing_ok=True)
        measured = await asyncio.to_thread(look, url, (width, height), tmp_path / f"{width}", shot)
        assert measured["clientWidth"] == width, measured  # the viewport is the size asked
        assert measured["scrollWidth"] <= measured["clientWidth"], measured  # no sideways
        boxes = measured["boxes"]
        assert {"verdict", "device-lamppost-002", "device-lamppost-104"} <= set(boxes), boxes
        for name, (left, right, _, _) in boxes.items():
            assert left >= 0 and right <= width, (width, name, boxes[name])
        assert boxes["verdict"][3] <= height  # the verdict on the first screen
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        print(f"screenshot: {shot}")
