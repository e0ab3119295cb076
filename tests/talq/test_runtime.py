"""The agent itself (`cityedge run`'s `Agent`) with the sample config's `[talq]`
table: it serves the TALQ gateway API and bootstraps with the CMS as two more
supervised tasks, and stops cleanly."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import aiohttp

from cityedge.gateway.config import load_config
from cityedge.gateway.runtime import Agent
from cityedge.protocol.key_files import create_key
from cityedge.street.modbus import ModbusStreet
from tests.talq.cms_sim import SimulatedCms
from tests.talq.site import SAMPLE, free_port, needs_spec, wait_for

pytestmark = needs_spec


def config_file(tmp_path: Path, street: ModbusStreet, port: int, cms: str) -> Path:
    """config/talq.toml with this test's state dir, ports and CMS."""
    text = SAMPLE.read_text()
    text = text.replace('state_dir = "/var/lib/cityedge"', f'state_dir = "{tmp_path / "state"}"')
    text = text.replace("127.0.0.1:8443", f"127.0.0.1:{port}")
    text = text.replace("http://127.0.0.1:8080/talq", cms)
    ports = iter(d.port for d in street.devices)
    text = re.sub(r"^port = 150\d\d$", lambda _: f"port = {next(ports)}", text, flags=re.M)
    text += f"\n[uplink]\nport = {free_port()}\n"  # no broker: the uplink retries, TALQ goes on
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


async def test_the_agent_runs_the_talq_gateway(tmp_path: Path) -> None:
    cms = SimulatedCms(free_port())
    await cms.start()
    try:
        async with ModbusStreet(lampposts=3, meters=0) as street:
            port = free_port()
            create_key(tmp_path / "state" / "keys" / "gateway.key")
            agent = Agent(load_config(config_file(tmp_path, street, port, cms.base)))
            task = asyncio.create_task(agent.run())
            try:
                assert await wait_for(lambda: cms.bootstrapped and len(cms.devices) == 3, 30)
                assert {"talq-api", "talq-cms"} <= set(agent.tasks)
                params = {"clientAddress": str(uuid.uuid4())}
                async with aiohttp.ClientSession() as http, http.get(
                    f"http://127.0.0.1:{port}/devices", params=params,
                    headers={"talq-api-version": "2.7.1"},
                ) as response:  # fmt: skip
                    assert response.status == 200
                    names = {d["name"] for d in await response.json()}
                assert names == {"gateway", "lamppost-001", "lamppost-002", "lamppost-003"}
            finally:
                agent.stop()
                assert await asyncio.wait_for(task, 30) == 0
    finally:
        await cms.stop()
    assert cms.invalid == []
