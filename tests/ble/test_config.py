"""`[[drivers.ble]]` through the real config loader: errors name the key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from cityedge.drivers.ble.config import Section
from cityedge.gateway.config import ConfigError, load_config
from cityedge.gateway.registry import build_driver
from cityedge.sdk.driver import Driver

GATEWAY = """
[gateway]
id = "gw-1"
site = "town-01"
state_dir = "state"
"""

GOOD = """
[[drivers.ble]]
name = "ble-cabinet-12"
adapter = "hci1"
count_unknown = true
[[drivers.ble.devices]]
name = "thermo-12"
address = "a4:c1:38:8d:18:b2"
interval = 30
silent_after = 4
points = ["temperature", "humidity"]
[[drivers.ble.devices]]
name = "bin-12"
address = "54-48-E6-8F-80-A5"
bindkey = "231d39c1d7cc1ab1aee224cd096db932"
[drivers.ble.devices.gatt]
every = 86400
points = ["battery_level", "firmware"]
"""


def load(tmp_path: Path, text: str) -> Section:
    path = tmp_path / "agent.toml"
    path.write_text(GATEWAY + text)
    sections = load_config(path).config.drivers["ble"]
    assert isinstance(sections[0], Section)
    return sections[0]


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "agent.toml"
    path.write_text(GATEWAY + text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_good_section_loads_and_normalises(tmp_path: Path) -> None:
    section = load(tmp_path, GOOD)
    thermo, bin_ = section.devices
    assert section.adapter == "hci1" and section.count_unknown
    assert thermo.address == "A4:C1:38:8D:18:B2"
    assert bin_.address == "54:48:E6:8F:80:A5"
    assert bin_.key == bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
    assert bin_.gatt is not None and bin_.gatt.points == ["battery_level", "firmware"]
    assert section.scanning == "passive"  # the default: send nothing, hear only BTHome


def test_section_builds_a_driver(tmp_path: Path) -> None:
    loaded_path = tmp_path / "agent.toml"
    loaded_path.write_text(GATEWAY + GOOD)
    loaded = load_config(loaded_path)
    kind, section = loaded.config.driver_sections()[0]
    driver = build_driver(kind, section, loaded.driver_env())
    assert isinstance(driver, Driver)
    catalogue = driver.catalogue()
    assert set(catalogue) == {"thermo-12", "bin-12"}
    assert {"temperature", "humidity", "rssi", "battery_level"} <= set(
        catalogue["thermo-12"].points
    )
    assert catalogue["thermo-12"].points["temperature"].unit == "°C"


DEVICE = "[[drivers.ble]]\nname = 'b'\n[[drivers.ble.devices]]\nname = 'd'\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (DEVICE + "address = 'A4:C1:38:8D:18'\n",
         "drivers.ble[0].devices[0].address: expected a Bluetooth address like"),
        (DEVICE + "address = 'phone'\n", "drivers.ble[0].devices[0].address:"),
        (DEVICE, "drivers.ble[0].devices[0].address: required key is missing"),
        (DEVICE + "address = 'A4:C1:38:8D:18:B2'\nbindkey = '231d39c1d7cc1ab1aee224cd096db9'\n",
         "drivers.ble[0].devices[0]: bindkey: expected 32 hex digits (a 16-byte AES key), "
         "got 30 characters"),
        (DEVICE + "address = 'A4:C1:38:8D:18:B2'\nbindkey = 'zz1d39c1d7cc1ab1aee224cd096db932'\n",
         "bindkey: expected 32 hex digits (a 16-byte AES key), got not hexadecimal"),
        (DEVICE + "address = 'A4:C1:38:8D:18:B2'\ninterval = 0\n",
         "drivers.ble[0].devices[0].interval:"),
        (DEVICE + "address = 'A4:C1:38:8D:18:B2'\npoints = ['temprature']\n",
         "drivers.ble[0].devices[0].points: unknown BTHome point(s) temprature"),
        (DEVICE + "address = 'A4:C1:38:8D:18:B2'\n[drivers.ble.devices.gatt]\npoints = ['pin']\n",
         "drivers.ble[0].devices[0].gatt.points[0]:"),
        (DEVICE + "address = 'A4:C1:38:8D:18:B2'\nmac = 'x'\n",
         "drivers.ble[0].devices[0].mac: unknown key"),
        ("[[drivers.ble]]\nname = 'b'\nadapter = 'bluetooth0'\n", "drivers.ble[0].adapter:"),
        ("[[drivers.ble]]\nname = 'b'\nscanning = 'aggressive'\n", "drivers.ble[0].scanning:"),
        (DEVICE + "address = 'A4:C1:38:8D:18:B2'\n[[drivers.ble.devices]]\nname = 'd'\n"
         "address = 'a4:c1:38:8d:18:b2'\n",
         "devices[1].name: 'd' already used by devices[0]; devices[1].address: "
         "A4:C1:38:8D:18:B2 already used by devices[0]"),
    ],
)  # fmt: skip
def test_errors_name_the_key_path(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, text)
    assert any(expected in p for p in found), found


def test_a_wrong_bindkey_is_never_echoed(tmp_path: Path) -> None:
    secret = "231d39c1d7cc1ab1aee224cd096db9"  # two digits short, still a secret
    found = problems(tmp_path, DEVICE + f"address = 'A4:C1:38:8D:18:B2'\nbindkey = '{secret}'\n")
    assert found and not any(secret in p for p in found)
