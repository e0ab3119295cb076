"""A simulated street: lamppost controllers and cabinet energy meters, each a
real Modbus TCP server on 127.0.0.1 (one port per device); and a junction
cabinet's RS-485 line: traffic-light controllers and a meter answering Modbus
RTU by unit id on one serial port. For the tests, the demo and the benchmarks.

The simulated devices keep their state in registers laid out by the same
profiles the driver reads, encoded by the same codec, so what a test sees
through the driver went over the wire as real frames. Each device counts the
read and write requests it received, and can be made to misbehave: stop
answering, answer garbage, answer with an exception, or be switched off.

    async with ModbusStreet(lampposts=20, meters=1) as street:
        section = Section.parse(street.driver_tables())
        ...
        street.read_requests("lamppost-001")

    async with JunctionCabinet("/tmp/ttyDEV", controllers=2, meters=1) as cabinet:
        section = Section.parse(cabinet.driver_table("junction", port="/tmp/ttyGW"))
        cabinet.controller("traffic-controller-1").inject("conflict")
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from cityedge.drivers.modbus.budget import LineFormat
from cityedge.drivers.modbus.profile import resolve_profile
from cityedge.sdk.model import Value
from cityedge.street.modbus_devices import (
    EnergyMeter,
    Fault,
    Lamppost,
    SimulatedDevice,
    TrafficController,
    TrafficMode,
)
from cityedge.street.modbus_server import DeviceServer, SerialDeviceServer

# the simulated devices are imported from here by tests and the demo, too
__all__ = [
    "EnergyMeter",
    "Fault",
    "JunctionCabinet",
    "Lamppost",
    "ModbusStreet",
    "SimulatedDevice",
    "StreetDevice",
    "TrafficController",
    "TrafficMode",
]


@dataclass(frozen=True, slots=True)
class StreetDevice:
    """Where a simulated device listens, as a driver config needs it."""

    name: str
    profile: str
    host: str
    port: int
    unit: int = 1


class _Site:
    """Simulated devices by name, and what tests look at inside them."""

    def __init__(self) -> None:
        self._sim: dict[str, SimulatedDevice] = {}

    def device(self, name: str) -> SimulatedDevice:
        return self._sim[name]

    def read_requests(self, name: str) -> int:
        return self._sim[name].reads

    def write_requests(self, name: str) -> int:
        return self._sim[name].writes

    def register(self, name: str, point: str) -> Value:
        """The simulated device's current value of `point` (as its registers hold it)."""
        return self._sim[name].get(point)

    def set_fault(self, name: str, fault: Fault | None) -> None:
        """Make a device misbehave (None: behave again)."""
        self._sim[name].fault = fault


class ModbusStreet(_Site):
    """`async with ModbusStreet(lampposts=20, meters=1) as street:` — devices on loopback.

    `base_port` pins ports (device i on base_port + i, lampposts first), as the
    demo's config expects; by default every device gets a free port.
    """

    def __init__(
        self,
        lampposts: int = 20,
        meters: int = 1,
        *,
        host: str = "127.0.0.1",
        base_port: int | None = None,
        seed: int = 0,
        speed: float = 1.0,
    ) -> None:
        super().__init__()
        self.host = host
        self.base_port = base_port
        lamp_profile = resolve_profile("lamppost")
        meter_profile = resolve_profile("energy-meter")
        lamps: list[Lamppost] = []
        for i in range(1, lampposts + 1):
            lamp = Lamppost(f"lamppost-{i:03d}", lamp_profile, seed=seed * 10_000 + i, speed=speed)
            lamps.append(lamp)
            self._sim[lamp.name] = lamp

        def phase_loads() -> tuple[float, float, float]:
            loads = [0.0, 0.0, 0.0]
            for n, lamp in enumerate(lamps):
                loads[n % 3] += lamp.power_w
            return (loads[0], loads[1], loads[2])

        for i in range(1, meters + 1):
            name = "cabinet-meter" if meters == 1 else f"cabinet-meter-{i:02d}"
            meter = EnergyMeter(name, meter_profile, phase_loads, seed=seed * 10_000 + 5000 + i,
                                speed=speed)  # fmt: skip
            self._sim[name] = meter
        self._servers: dict[str, DeviceServer] = {}
        # pinned ports are known before start; free ones once their server listens
        self._ports = {
            name: base_port + n if base_port is not None else 0 for n, name in enumerate(self._sim)
        }

    async def __aenter__(self) -> ModbusStreet:
        try:
            for name in self._sim:
                server = await DeviceServer.start(self._sim[name], self.host, self._ports[name])
                self._servers[name] = server
                self._ports[name] = server.port
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            async with asyncio.timeout(5):
                await server.stop()

    # --- what a config needs ---------------------------------------------------------

    @property
    def devices(self) -> list[StreetDevice]:
        return [
            StreetDevice(name, sim.profile.type, self.host, self._ports[name], sim.unit)
            for name, sim in self._sim.items()
        ]

    def driver_tables(self, name: str = "street", **device_settings: Any) -> dict[str, Any]:
        """One `[[drivers.modbus]]` table for every device of the street.

        `device_settings` (poll_interval, timeout, retries, backoff_max) go into
        every device table.
        """
        return {
            "name": name,
            "transport": "tcp",
            "devices": [
                {
                    "name": d.name,
                    "profile": d.profile,
                    "host": d.host,
                    "port": d.port,
                    "unit": d.unit,
                    **device_settings,
                }
                for d in self.devices
            ],
        }

    # --- looking inside, and faults ------------------------------------------------------

    def lamppost(self, name: str) -> Lamppost:
        device = self._sim[name]
        if not isinstance(device, Lamppost):
            raise KeyError(f"{name} is not a lamppost")
        return device

    def fail_lamp(self, name: str, failed: bool = True) -> None:
        """Inject (or repair) an LED module failure: the lamp_failure bit follows."""
        lamp = self.lamppost(name)
        lamp.lamp_failed = failed
        lamp.update()

    async def switch_off(self, name: str) -> None:
        """Cut a device's power: its port refuses connections until `switch_on`."""
        server = self._servers.pop(name, None)
        if server is not None:
            async with asyncio.timeout(5):
                await server.stop()

    async def switch_on(self, name: str) -> None:
        if name in self._servers:
            return
        server = await DeviceServer.start(self._sim[name], self.host, self._ports[name])
        self._servers[name] = server


class JunctionCabinet(_Site):
    """`async with JunctionCabinet(port) as cabinet:` — a junction's RS-485 line.

    Traffic controllers (units 1..n) and an energy meter (the next unit) answer
    Modbus RTU on the serial device `port` (the device end of a pty pair, or a
    real adapter); the driver reads them through the other end. The meter
    measures what the signal heads draw, which follows the controllers' modes.
    """

    def __init__(
        self,
        port: str | Path,
        *,
        controllers: int = 2,
        meters: int = 1,
        line: LineFormat | None = None,
        seed: int = 0,
        speed: float = 1.0,
    ) -> None:
        super().__init__()
        self.port = str(port)
        # 8N2, not the usual 8E1: a pty refuses parity, and no parity takes 2 stop
        # bits, so a character is 11 bits either way
        self.line = line or LineFormat(19200, parity="N", stopbits=2)
        self._server: SerialDeviceServer | None = None
        controller_profile = resolve_profile("traffic-controller")
        lights: list[TrafficController] = []
        for unit in range(1, controllers + 1):
            name = f"traffic-controller-{unit}"
            tc = TrafficController(name, controller_profile, unit=unit, seed=seed * 100 + unit,
                                   speed=speed)  # fmt: skip
            lights.append(tc)
            self._sim[name] = tc

        def signal_load() -> tuple[float, float, float]:
            # LED signal heads: ~400 W per controller running, ~150 W flashing, ~20 W dark
            draw = {TrafficMode.FLASHING_AMBER: 150.0, TrafficMode.DARK: 20.0}
            watts = sum(draw.get(TrafficMode(int(tc.get("mode"))), 400.0) for tc in lights)
            return (watts / 3, watts / 3, watts / 3)

        meter_profile = resolve_profile("energy-meter")
        for n in range(1, meters + 1):
            name = "junction-meter" if meters == 1 else f"junction-meter-{n}"
            unit = controllers + n
            self._sim[name] = EnergyMeter(name, meter_profile, signal_load, unit=unit,
                                          seed=seed * 100 + 50 + n, speed=speed)  # fmt: skip

    async def __aenter__(self) -> JunctionCabinet:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Start answering on the port (again, after `close`)."""
        if self._server is None:
            self._server = await SerialDeviceServer.start(list(self._sim.values()), self.port,
                                                          self.line)  # fmt: skip

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            async with asyncio.timeout(5):
                await server.stop()

    def controller(self, name: str) -> TrafficController:
        device = self._sim[name]
        if not isinstance(device, TrafficController):
            raise KeyError(f"{name} is not a traffic controller")
        return device

    @property
    def units(self) -> dict[str, tuple[int, str]]:
        """Device name -> (unit id, profile type)."""
        return {name: (sim.unit, sim.profile.type) for name, sim in self._sim.items()}

    def driver_table(
        self, name: str, port: str | Path, *, line: Mapping[str, Any] | None = None,
        **device_settings: Any,
    ) -> dict[str, Any]:  # fmt: skip
        """One `[[drivers.modbus]]` RTU table for the cabinet, read through `port`.

        `line` adds keys of the line (timeout, frame_gap, reopen_max);
        `device_settings` (poll_interval, retries, backoff_max, timeout) go into
        every device table.
        """
        return {
            "name": name,
            "transport": "rtu",
            "port": str(port),
            "baud": self.line.baudrate,
            "parity": self.line.parity,
            "stopbits": self.line.stopbits,
            **(line or {}),
            "devices": [
                {"name": device, "profile": profile, "unit": unit, **device_settings}
                for device, (unit, profile) in self.units.items()
            ],
        }
