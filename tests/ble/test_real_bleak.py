"""The driver with the real bleak (no fakes) where BlueZ is missing or hangs up.

No Bluetooth here, but bleak's BlueZ backend talks to the D-Bus system bus over a
Unix socket, and that we can point anywhere: at nothing (no D-Bus, no BlueZ) or at
a socket that hangs up on every caller (BlueZ dying). The driver must report the
adapter DOWN with a detail a technician can act on, raise the alarm once, keep
retrying, and answer GATT reads with DeviceUnreachable.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from cityedge.drivers.ble.driver import ADAPTER_DOWN, BleDriver
from cityedge.sdk.driver import DriverEnv
from cityedge.sdk.model import DeviceState, DeviceUnreachable
from tests.ble.support import running, section, until

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="bleak's BlueZ backend")


def adapter_state(driver: BleDriver) -> tuple[DeviceState, str]:
    health = next(h for h in driver.health() if h.device.endswith(":hci0"))
    return health.state, health.detail or ""


async def test_no_dbus_socket(
    tmp_path: Path, env: DriverEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-such-bus")
    driver = BleDriver(section(scanning="passive"), env)  # bleak's own classes
    async with running(driver) as sink:
        await until(lambda: adapter_state(driver)[0] is DeviceState.DOWN)
        _, detail = adapter_state(driver)
        assert "No such file or directory (is D-Bus running and BlueZ installed?)" in detail
        with pytest.raises(DeviceUnreachable, match="no radio"):
            await driver.read("thermo-12", ["battery_level"])
        await until(lambda: driver.health()[0].errors.get("start_active", 0) >= 2)  # retrying
    assert [e.active for e in sink.events if e.kind == ADAPTER_DOWN] == [True]


async def test_dbus_hangs_up(
    tmp_path: Path, env: DriverEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bus"
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={path}")
    callers = 0

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal callers
        callers += 1
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_unix_server(hang_up, path)
    try:
        driver = BleDriver(section(), env)
        async with running(driver):
            await until(lambda: adapter_state(driver)[0] is DeviceState.DOWN)
            detail = adapter_state(driver)[1]
            assert re.match(
                r"adapter hci0: (ConnectionResetError|BrokenPipeError|EOFError)", detail
            )
            await until(lambda: callers >= 2)  # it keeps trying, with backoff
    finally:
        server.close()
        await server.wait_closed()


async def test_gatt_read_without_bluez_is_unreachable(
    tmp_path: Path, env: DriverEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-such-bus")
    driver = BleDriver(section(), env)  # not running: the radio state is unknown, not down
    with pytest.raises(DeviceUnreachable, match="thermo-12"):
        await driver.read("thermo-12", ["battery_level"])
