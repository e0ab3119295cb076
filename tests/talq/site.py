"""A TALQ gateway on a simulated street, for the tests: real Modbus devices
(pymodbus servers), the real driver, lighting controller, overrides and TALQ
core, wired the way the runtime wires them — without MQTT, which TALQ does not use.

The official OpenAPI files are read from `../shared/talq/` next to the repository.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
import tomllib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from cityedge.gateway.config import AgentConfig, validate_config
from cityedge.gateway.control.overrides import Overrides
from cityedge.gateway.lighting import LightingController, ScaledClock, Sky, SystemClock
from cityedge.gateway.registry import build_driver
from cityedge.gateway.talq.core import TalqCore
from cityedge.gateway.talq.store import TalqStore
from cityedge.sdk.driver import Driver, DriverEnv
from cityedge.sdk.model import DeviceInfo, Event, PointInfo, Reading, Value
from cityedge.street.broker import free_port
from cityedge.street.modbus import ModbusStreet

REPO = Path(__file__).resolve().parents[2]
SPEC_DIR = REPO.parent / "shared" / "talq"
SAMPLE = REPO / "config" / "talq.toml"
GATEWAY_SPEC = SPEC_DIR / "talq-api-gateway-2-7-1-online.json"
CMS_SPEC = SPEC_DIR / "talq-api-cms-2-7-1-online.json"
DATA_MODEL = SPEC_DIR / "talq-data-model-2-7-1-online.json"

needs_spec = pytest.mark.skipif(
    not GATEWAY_SPEC.exists(),
    reason=f"the TALQ 2.7.1 OpenAPI files are not at {SPEC_DIR} (../shared/talq/)",
)


def sample_config(
    state_dir: Path, street: ModbusStreet, *, port: int, cms_uri: str, **lighting: Any
) -> AgentConfig:
    """config/talq.toml with the street's devices, free ports and a temporary state."""
    raw = tomllib.loads(SAMPLE.read_text())
    raw["gateway"] = {**raw["gateway"], "state_dir": str(state_dir)}
    raw["talq"] = {**raw["talq"], "listen": f"127.0.0.1:{port}",
                   "gateway_uri": f"http://127.0.0.1:{port}", "cms_uri": cms_uri,
                   "retry_s": 0.5, "request_timeout": 10.0}  # fmt: skip
    names = {d.name for d in street.devices}
    groups = [{**g, "devices": [d for d in g["devices"] if d in names]}
              for g in raw["lighting"]["groups"]]  # fmt: skip
    raw["lighting"] = {**raw["lighting"], "recheck_s": 5.0, "groups": groups, **lighting}
    raw["drivers"] = {"modbus": [street.driver_tables(name="street", timeout=1.0,
                                                      poll_interval=1.0)]}  # fmt: skip
    return validate_config(raw, str(SAMPLE))


class Site:
    """What the runtime's `Agent` is to the TALQ gateway (`AgentSide`), and to the
    overrides (`DeviceAccess`)."""

    def __init__(
        self, config: AgentConfig, *, clock: ScaledClock | SystemClock | None = None
    ) -> None:
        self.config = config
        section = config.driver_sections()[0][1]
        state = config.gateway.state_dir
        self.driver: Driver = build_driver("modbus", section, DriverEnv(state, state))
        self.events: list[Event] = []
        self.readings: list[Reading] = []
        self.observers: list[Callable[[Sequence[Reading | Event]], None]] = []
        gw = config.gateway
        assert config.lighting is not None and gw.latitude is not None
        assert gw.longitude is not None
        self.clock = clock or SystemClock()
        self.lighting: LightingController | None = LightingController(
            config.lighting, Sky(gw.latitude, gw.longitude, gw.timezone),
            write=self.driver.write, emit=self.emit, state_dir=state, clock=self.clock,
            known_devices=lambda: self.devices().keys(),
        )  # fmt: skip
        self.overrides = Overrides(self, state / "overrides.json",
                                   now=lambda: self.clock.now().timestamp())  # fmt: skip
        self.lighting.on_superseded = self.overrides.superseded
        self.observers.append(self.lighting.observe)  # as the runtime's pipeline does
        assert config.talq is not None
        self.core = TalqCore(config.talq, self, TalqStore(state / "talq" / "state.json"),
                             now=self.clock.now)  # fmt: skip

    # --- AgentSide / DeviceAccess ---
    def devices(self) -> dict[str, DeviceInfo]:
        return self.driver.catalogue()

    def driver_for(self, device: str) -> Driver | None:
        return self.driver if device in self.driver.catalogue() else None

    async def read_point(self, device: str, point: str) -> Value | None:
        readings = await self.driver.read(device, [point])
        return readings[0].value if readings else None

    async def write(self, device: str, point: str, value: Value) -> None:
        await self.driver.write(device, point, value)
        if self.lighting is not None:
            self.lighting.external_write(device, point, value)

    def check_write(self, device_type: str, point: PointInfo, value: Value) -> str | None:
        return self.config.policy.check_write(device_type, point, value)

    def report(self, event: Event) -> None:
        self.events.append(event)

    async def emit(self, items: Sequence[Reading | Event]) -> None:
        for item in items:
            (self.events if isinstance(item, Event) else self.readings).append(item)  # type: ignore[arg-type]
        for observe in self.observers:
            observe(items)


class LoopThread:
    """An event loop in a thread, for a synchronous client (schemathesis' requests)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[Any], timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def wait_for(condition: Callable[[], bool], timeout: float, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(every)
    return condition()


def headers(**extra: str) -> dict[str, str]:
    return {"talq-api-version": "2.7.1", "Content-Type": "application/json", **extra}


def dumps(body: Any) -> bytes:
    return json.dumps(body).encode()


def at(clock_now: dt.datetime) -> str:
    return clock_now.astimezone(dt.UTC).isoformat()


__all__ = ["CMS_SPEC", "DATA_MODEL", "GATEWAY_SPEC", "LoopThread", "Site", "free_port",
           "needs_spec", "sample_config", "wait_for"]  # fmt: skip
