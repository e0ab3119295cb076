"""`transport = "rtu"` tables: what a serial line needs, every mistake named by
its key path, and TCP tables unchanged beside them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from cityedge.drivers.modbus.budget import LineFormat
from cityedge.drivers.modbus.config import RtuSection, Section, TcpSection
from cityedge.gateway.config import ConfigError, load_config, validate_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "modbus.md"
GATEWAY = {"id": "gw-1", "site": "town-01"}


def junction(**line: Any) -> dict[str, Any]:
    return {
        "name": "junction-4",
        "transport": "rtu",
        "port": "/dev/ttyUSB0",
        **line,
        "devices": [
            {"name": "signals-north", "profile": "traffic-controller", "unit": 1},
            {"name": "signals-south", "profile": "traffic-controller", "unit": 2},
            {"name": "junction-meter", "profile": "energy-meter", "unit": 3},
        ],
    }


def problems(*tables: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config({"gateway": GATEWAY, "drivers": {"modbus": list(tables)}}, "agent.toml")
    return info.value.problems


def test_a_line_with_defaults() -> None:
    section = Section.parse(junction())
    assert isinstance(section, RtuSection)
    assert section.line == LineFormat(19200, 8, "E", 1)  # the Modbus serial default
    assert section.timeout == 0.5 and section.frame_gap is None and section.reopen_max == 30.0
    assert [d.unit for d in section.devices] == [1, 2, 3]
    assert section.devices[0].profile.type == "traffic-controller"
    assert section.devices[0].timeout is None  # the line's
    tcp = Section.parse(
        {
            "name": "street",
            "devices": [{"name": "lamp", "profile": "lamppost", "host": "127.0.0.1"}],
        }
    )
    assert isinstance(tcp, TcpSection) and tcp.transport == "tcp"


def test_line_settings_in_a_technicians_words() -> None:
    section = Section.parse(
        junction(baud=9600, parity="none", stopbits=2, frame_gap=0.005, timeout=1.5)
    )
    assert isinstance(section, RtuSection)
    assert str(section.line) == "9600 8N2" and section.frame_gap == 0.005
    assert Section.parse(junction(parity="Even")).parity == "E"


def test_every_line_mistake_at_once_with_its_key_path() -> None:
    bad = junction(port="  ", baud=19000, parity="mark", stopbits=3, bytesize=7, timeout=0)
    found = problems(bad)
    assert found == [
        "drivers.modbus[0].port: names no serial device, got '  '",
        "drivers.modbus[0].baud: expected one of 1200, 2400, 4800, 9600, 19200, 38400, "
        "57600, 115200, got 19000",
        "drivers.modbus[0].parity: should be 'N', 'E' or 'O', got 'mark'",
        "drivers.modbus[0].stopbits: should be 1 or 2, got 3",
        "drivers.modbus[0].bytesize: should be 8, got 7",
        "drivers.modbus[0].timeout: should be greater than 0, got 0",
    ]


def test_units_are_1_to_247_and_unique_on_the_line() -> None:
    table = junction()
    table["devices"][2]["unit"] = 248
    table["devices"].append({"name": "x", "profile": "energy-meter", "unit": 0})
    del table["devices"][1]["unit"]
    assert problems(table) == [
        "drivers.modbus[0].devices[1].unit: required key is missing",
        "drivers.modbus[0].devices[2].unit: out of range: "
        "should be less than or equal to 247, got 248",
        "drivers.modbus[0].devices[3].unit: out of range: "
        "should be greater than or equal to 1, got 0",
    ]
    clash = junction()
    clash["devices"][2]["unit"] = 1
    clash["devices"][1]["name"] = "signals-north"
    assert problems(clash) == [
        "drivers.modbus[0].devices[1].name: 'signals-north' already used by devices[0], "
        "got 'signals-north'",
        "drivers.modbus[0].devices[2].unit: unit 1 is already devices[0] on /dev/ttyUSB0, got 1",
    ]


def test_tcp_keys_on_a_line_and_an_unknown_transport() -> None:
    table = junction()
    table["devices"][0]["host"] = "10.0.0.9"
    del table["port"]
    assert problems(table, {"name": "b", "transport": "udp", "devices": []}) == [
        "drivers.modbus[0].port: required key is missing",
        "drivers.modbus[0].devices[0].host: unknown key",
        """drivers.modbus[1].transport: expected "tcp" or "rtu", got 'udp'""",
    ]


def test_the_sample_in_the_docs_loads(tmp_path: Path) -> None:
    samples = re.findall(r"```toml\n(.*?)```", DOC.read_text(), flags=re.S)
    (rtu,) = [s for s in samples if 'transport = "rtu"' in s]
    path = tmp_path / "agent.toml"
    path.write_text('[gateway]\nid = "gw-1"\nsite = "town-01"\n\n' + rtu)
    (section,) = load_config(path).config.drivers["modbus"]
    assert isinstance(section, RtuSection)
    assert [(d.name, d.unit, d.profile.type) for d in section.devices] == [
        ("signals-north", 1, "traffic-controller"),
        ("signals-south", 2, "traffic-controller"),
        ("junction-meter", 3, "energy-meter"),
    ]
    # every key of the line and of its devices is shown in the sample
    for key in (*RtuSection.table_keys(), *type(section.devices[0]).table_keys()):
        if key not in ("enabled",):
            assert re.search(rf"^({key} = |\[\[drivers\.modbus\.{key}\]\])", rtu, flags=re.M), key


def test_a_misspelt_key_is_named_with_the_one_meant() -> None:
    table = junction(baudrate=9600)  # pyserial's word; every serial driver's table says baud
    assert problems(table) == ["drivers.modbus[0].baudrate: unknown key (did you mean 'baud'?)"]
