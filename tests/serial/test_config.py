"""The serial drivers' config through the agent's own loader: errors name key paths;
the examples in docs/serial.md are valid configs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from cityedge.drivers.ascii.profile import _PointSpec
from cityedge.drivers.nmea.receiver import POINTS
from cityedge.gateway.config import ConfigError, load_config, validate_config
from cityedge.gateway.registry import build_driver, known_kinds

DOCS = Path(__file__).resolve().parents[2] / "docs" / "serial.md"
GATEWAY = {"gateway": {"id": "gw-bus-12", "site": "town-03"}}


def problems(drivers: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        validate_config({**GATEWAY, "drivers": drivers}, "agent.toml")
    return err.value.problems


def test_both_drivers_are_known_kinds() -> None:
    assert {"nmea", "ascii"} <= set(known_kinds())


def test_the_shared_line_layer_is_not_a_driver() -> None:
    assert "serialline" not in known_kinds()
    (problem,) = problems({"serialline": [{"name": "line", "port": "/dev/ttyS0"}]})
    assert problem.startswith("drivers.serialline: unknown driver 'serialline' (known: ")
    assert "nmea" in problem and "ascii" in problem


def test_bad_serial_keys_name_their_key_path() -> None:
    assert problems(
        {
            "nmea": [
                {"name": "gps", "device": "bus-12-gps", "port": "ttyUSB0", "baud": 4801},
                {"name": "gps2", "device": "tram-7-gps", "port": ""},
                {
                    "name": "gps3",
                    "device": "tram-8-gps",
                    "port": "/dev/ttyS0",
                    "epoch_gap": 2,
                    "stale_after": 1,
                    "reopen_min": 5,
                    "reopen_max": 1,
                },
            ]
        }
    ) == [
        "drivers.nmea[0].port: expected the absolute path of a serial device, like "
        "/dev/ttyUSB0 or /dev/serial/by-id/usb-…, got 'ttyUSB0'",
        "drivers.nmea[0].baud: expected a standard baud rate (300, 600, 1200, 2400, 4800, "
        "9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600), got 4801",
        "drivers.nmea[1].port: should have at least 1 character, got ''",
        "drivers.nmea[2]: reopen_min (5.0) is greater than reopen_max (1.0)",
        "drivers.nmea[2]: epoch_gap (2.0) must be shorter than stale_after (1.0)",
    ]
    assert problems(
        {
            "nmea": [
                {
                    "name": "gps",
                    "device": "g",
                    "port": "/dev/ttyS0",
                    "epoch_gap": 2,
                    "stale_after": 1,
                }
            ]
        }
    ) == ["drivers.nmea[0]: epoch_gap (2.0) must be shorter than stale_after (1.0)"]


def test_bad_ascii_devices_name_their_key_path(tmp_path: Path) -> None:
    found = problems({"ascii": [{
        "name": "stop-4711", "port": "/dev/ttyUSB1", "parity": "X",
        "devices": [{"name": "panel", "profile": "bollard"},
                    {"name": "panel-2", "profile": "info-panel", "timeout": 0}],
    }]})  # fmt: skip
    assert found == [
        "drivers.ascii[0].parity: should be 'N', 'E' or 'O', got 'X'",
        "drivers.ascii[0].devices[0].profile: bollard: no such ASCII profile (known: info-panel)",
        "drivers.ascii[0].devices[1].timeout: should be greater than 0, got 0",
    ]
    assert problems(
        {
            "ascii": [
                {
                    "name": "s",
                    "port": "/dev/ttyUSB1",
                    "devices": [
                        {"name": "panel", "profile": "info-panel"},
                        {"name": "panel", "profile": "info-panel"},
                    ],
                }
            ]
        }
    ) == [
        "drivers.ascii[0]: devices[1].name: 'panel' already used by devices[0]; "
        "devices[1].address: no address, like devices[0]: two devices on one line need "
        "distinct addresses"
    ]


def test_a_profile_file_next_to_the_config_and_its_errors(tmp_path: Path) -> None:
    shipped = (DOCS.parents[1] / "config" / "profiles" / "ascii" / "info-panel.toml").read_text()
    (tmp_path / "bollard.toml").write_text(
        shipped.replace('type = "info-panel"', 'type = "bollard"').replace(
            'send = "STATUS?"', 'send = "@{address} STATUS?"'
        )
    )
    config = tmp_path / "agent.toml"
    config.write_text(
        '[gateway]\nid = "gw-1"\nsite = "town-03"\n\n[[drivers.ascii]]\nname = "bollards"\n'
        'port = "/dev/ttyUSB3"\n[[drivers.ascii.devices]]\nname = "b1"\n'
        'profile = "bollard.toml"\naddress = "01"\n[[drivers.ascii.devices]]\nname = "b2"\n'
        'profile = "bollard.toml"\n'
    )
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert err.value.problems == [
        "drivers.ascii[0].devices[1]: profile 'bollard' addresses its devices: set address"
    ]
    config.write_text(config.read_text() + 'address = "02"\n')
    loaded = load_config(config)
    (section,) = loaded.config.drivers["ascii"]
    assert section.devices[0].profile.source == tmp_path / "bollard.toml"
    driver = build_driver("ascii", section, loaded.driver_env())
    assert driver._devices["b2"].polls == {"status": "@02 STATUS?"}  # type: ignore[attr-defined]


def doc_tables() -> list[str]:
    blocks = re.findall(r"```toml\n(.*?)```", DOCS.read_text(), re.DOTALL)
    return [b for b in blocks if "[[drivers." in b]


@pytest.mark.parametrize("block", doc_tables(), ids=lambda b: b.split("\n")[0])
def test_the_docs_config_examples_are_valid(block: str) -> None:
    raw = tomllib.loads(block)
    config = validate_config({**GATEWAY, **raw}, "docs/serial.md")
    (kind,) = config.drivers
    assert config.drivers[kind][0].name in block


def test_the_docs_name_every_point_and_profile_key() -> None:
    text = DOCS.read_text()
    assert len(doc_tables()) == 2
    for point in POINTS:
        assert f"`{point}`" in text, point
    for key in _PointSpec.table_keys():
        assert f"`{key}`" in text or f"\n{key} = " in text, key
