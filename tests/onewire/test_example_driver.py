"""The example driver (`cityedge.drivers.onewire`, docs/drivers.md) as the gateway
meets it: found by the registry, configured through the real loader and CLI, run
against a sysfs tree of real files laid out as Linux's w1 bus lays them out."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityedge.drivers.onewire.driver import SensorFault, parse_w1_slave
from cityedge.gateway.config import ConfigError, load_config
from cityedge.gateway.registry import build_driver, known_kinds
from cityedge.sdk.model import (
    DeviceState,
    DeviceUnreachable,
    Event,
    PointNotWritable,
    Reading,
    UnknownDevice,
)

ROOT = Path(__file__).resolve().parents[2]
GOOD = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
CRC_FAIL = "72 01 4b 46 7f ff 0e 10 57 : crc=57 NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
POWER_ON = "50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=85000\n"
AIR, DOOR = "28-00000a1b2c3d", "28-00000a1b2c3e"


def config(tmp_path: Path, bus: Path, extra: str = "") -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(f"""
[gateway]
id = "gw-1"
site = "town-01"
state_dir = "state"

[[drivers.onewire]]
name = "cabinet-w1"
bus = "{bus}"
interval = 1
devices = [
  {{ name = "cabinet-air", sensor = "{AIR}" }},
  {{ name = "cabinet-door", sensor = "{DOOR}" }},
]
{extra}""")
    return path


def sensor(bus: Path, sensor_id: str, text: str) -> None:
    (bus / sensor_id).mkdir(parents=True, exist_ok=True)
    (bus / sensor_id / "w1_slave").write_text(text)


def test_the_registry_finds_it_without_being_told() -> None:
    assert "onewire" in known_kinds()


def test_nothing_outside_its_folder_names_it() -> None:
    """Adding a protocol touches only its folder: the product's code never names it."""
    named = [p for root in (ROOT / "agent", ROOT / "drivers") for p in root.rglob("*.py")
             if "onewire" in p.read_text() and "onewire" not in p.parts]  # fmt: skip
    assert not named, named


async def test_readings_flow_and_a_failing_sensor_touches_only_its_own_health(
    tmp_path: Path,
) -> None:
    bus = tmp_path / "w1"
    sensor(bus, AIR, GOOD)
    sensor(bus, DOOR, CRC_FAIL)
    loaded = load_config(config(tmp_path, bus))
    [section] = loaded.config.drivers["onewire"]
    driver = build_driver("onewire", section, loaded.driver_env())
    got: list[Reading | Event] = []
    first = asyncio.Event()

    async def emit(items: Sequence[Reading | Event]) -> None:
        got.extend(items)
        first.set()

    task = asyncio.create_task(driver.run(emit))
    try:
        await asyncio.wait_for(first.wait(), 10)
    finally:
        task.cancel()
    assert [(r.device, r.point, r.value, r.unit) for r in got if isinstance(r, Reading)] == [
        ("cabinet-air", "temperature", 23.125, "°C")
    ]
    health = {h.device: h for h in driver.health()}
    assert health["cabinet-air"].state is DeviceState.UP
    assert health["cabinet-door"].state is DeviceState.DOWN
    assert health["cabinet-door"].errors == {"crc": 1}
    assert set(driver.catalogue()) == {"cabinet-air", "cabinet-door"}


async def test_reads_on_demand_say_what_is_wrong(tmp_path: Path) -> None:
    bus = tmp_path / "w1"
    sensor(bus, AIR, POWER_ON)
    loaded = load_config(config(tmp_path, bus))
    driver = build_driver("onewire", loaded.config.drivers["onewire"][0], loaded.driver_env())
    with pytest.raises(DeviceUnreachable, match="did not convert"):
        await driver.read("cabinet-air")
    with pytest.raises(DeviceUnreachable, match="not on the bus"):
        await driver.read("cabinet-door")  # no file: the sensor is not there
    with pytest.raises(UnknownDevice):
        await driver.read("lamppost-001")
    with pytest.raises(PointNotWritable):
        await driver.write("cabinet-air", "temperature", 20.0)
    sensor(bus, AIR, GOOD)
    [reading] = await driver.read("cabinet-air", ["temperature"])
    assert reading.value == 23.125
    assert {h.device: h.errors for h in driver.health()} == {
        "cabinet-air": {"not-converted": 1},
        "cabinet-door": {"missing": 1},
    }


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    extra = '[[drivers.onewire]]\nname = "second"\ndevices = [{ name = "x", sensor = "x" }]\n'
    with pytest.raises(ConfigError) as err:
        load_config(config(tmp_path, tmp_path, extra))
    assert ("drivers.onewire[1].devices[0].sensor: should be a 1-Wire id such as "
            "28-00000a1b2c3d, got 'x'") in err.value.render()  # fmt: skip


def test_the_cli_checks_a_config_that_uses_it(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cityedge.cli", "config", "check", str(config(tmp_path, tmp_path))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "2 device(s)" in out.stdout


@given(st.text(max_size=200))
def test_any_file_content_is_a_reading_or_a_sensor_fault(text: str) -> None:
    try:
        value = parse_w1_slave(text)
    except SensorFault as fault:
        assert fault.reason in {"garbled", "crc", "not-converted"}
    else:
        assert isinstance(value, float)
