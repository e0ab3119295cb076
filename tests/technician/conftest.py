"""Fixtures: a whole site (street, broker, agent with its control socket), as a
subprocess (`site`, module-wide) or in this test's event loop (`live`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cityedge.gateway.config import load_config
from cityedge.gateway.control.client import ControlClient
from cityedge.gateway.control.server import ControlServer
from cityedge.gateway.diagnostics.clock import fixed_clock
from cityedge.gateway.runtime import Agent
from cityedge.protocol.key_files import create_key
from cityedge.street.broker import Broker, free_port
from cityedge.street.modbus import ModbusStreet
from tests.technician.site import StreetThread, TechnicianAgent, remove, short_dir, write_config


@dataclass
class Site:
    directory: Path
    street: StreetThread
    broker: Broker
    config: Path
    socket: Path
    agent: TechnicianAgent
    page_port: int


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    directory = tmp_path_factory.mktemp("site")
    sockets = short_dir()
    socket = sockets / "control.sock"
    try:
        with StreetThread(lampposts=3) as street, Broker(workdir=directory / "broker") as broker:
            create_key(directory / "state" / "keys" / "gateway.key")
            page_port = free_port()
            config = write_config(
                directory,
                broker_port=broker.port,
                socket=socket,
                modbus=[street.street.driver_tables(name="street", poll_interval=0.5)],
                control={"maintenance_address": f"127.0.0.1:{page_port}"},
            )
            with TechnicianAgent(config, socket) as agent:
                yield Site(directory, street, broker, config, socket, agent, page_port)
                # Broker first: with it up, the runtime's stop waits 5 s for the
                # "offline" PUBACK (reported to the lead); these tests do not need it.
                broker.stop()
    finally:
        remove(sockets)


@dataclass
class Live:
    """An agent running in this test's event loop, its control server and its street."""

    directory: Path
    agent: Agent
    server: ControlServer
    street: ModbusStreet
    broker: Broker
    socket: Path

    async def ask(self, op: str, **arguments: object) -> Any:
        client = ControlClient(self.socket, timeout=30)
        return await asyncio.to_thread(client.call, op, **arguments)


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    sockets = short_dir()
    try:
        async with ModbusStreet(lampposts=2, meters=0) as street:
            with Broker(workdir=tmp_path / "broker") as broker:
                create_key(tmp_path / "state" / "keys" / "gateway.key")
                config = write_config(
                    tmp_path,
                    broker_port=broker.port,
                    socket=sockets / "control.sock",
                    modbus=[street.driver_tables(name="street", poll_interval=0.5)],
                    logging={"format": "console"},
                )
                agent = Agent(load_config(config))
                server = ControlServer(agent, clock=fixed_clock(True, "test clock"))
                running = asyncio.create_task(agent.run())
                serving = asyncio.create_task(server.run())
                try:
                    await asyncio.wait_for(server.listening.wait(), 10)
                    yield Live(tmp_path, agent, server, street, broker, server.path)
                finally:
                    # Broker first: with it up, the runtime's stop waits 5 s for the
                    # "offline" PUBACK (reported to the lead); these tests do not need it.
                    broker.stop()
                    agent.stop()
                    await asyncio.wait_for(asyncio.gather(running, return_exceptions=True), 20)
                    serving.cancel()
                    await asyncio.gather(serving, return_exceptions=True)
    finally:
        remove(sockets)
