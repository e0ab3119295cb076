"""Profiles and the driver's config section: shipped files load; every mistake is
named by file and key path, reported all at once, and never a traceback."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.drivers.modbus.config import Section
from cityedge.drivers.modbus.points import DataType, Order, RegisterKind
from cityedge.drivers.modbus.profile import (
    SHIPPED_PROFILES,
    ProfileError,
    load_profile,
    parse_profile,
    resolve_profile,
)
from cityedge.gateway.config import ConfigError, load_config
from cityedge.sdk.driver import SHIPPED_CONFIG_DIR
from cityedge.sdk.model import PointAccess

SHIPPED = sorted((SHIPPED_CONFIG_DIR / "profiles").glob("*.toml"))

GOOD = """
[device]
type = "test-device"

[[points]]
name = "a"
register = "holding"
address = 0
access = "rw"

[[points]]
name = "b"
register = "holding"
address = 1
type = "int32"
"""


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_profile_loads(path: Path) -> None:
    profile = load_profile(path)
    assert profile.type == path.stem
    assert profile.points and profile.requests
    for point in profile.points.values():
        info = point.info()
        assert info.kind in ("bool", "int", "float")


def test_shipped_lamppost_reads_as_documented() -> None:
    lamppost = resolve_profile("lamppost")
    points = lamppost.points
    assert points["energy"].type is DataType.UINT32 and points["energy"].unit == "kWh"
    assert points["dimming"].access is PointAccess.READ_WRITE and points["dimming"].maximum == 100
    assert points["lamp_failure"].alarm == "lamppost.lamp_failure"
    assert points["driver_fault"].bit == 1
    assert all(p.register is RegisterKind.HOLDING for p in points.values())
    meter = resolve_profile("energy-meter")
    assert all(p.type is DataType.FLOAT32 for p in meter.points.values())
    assert all(p.word_order is Order.LITTLE for p in meter.points.values())


def test_profile_found_by_path_and_cached(tmp_path: Path) -> None:
    path = tmp_path / "custom.toml"
    path.write_text(GOOD)
    first = resolve_profile(str(path))
    assert first.type == "test-device" and resolve_profile(str(path)) is first


def problems_of(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert str(path) in str(info.value)  # the file is always named
    return info.value.problems


def point_toml(**keys: Any) -> str:
    lines = ["[[points]]"]
    for key, value in keys.items():
        text = f'"{value}"' if isinstance(value, str) else str(value).lower()
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


DEVICE = '[device]\ntype = "t"\n'
HOLD = {"name": "a", "register": "holding", "address": 0}

BROKEN = [
    ("unknown device key", '[device]\ntype = "t"\nmax_regs = 4\n' + point_toml(**HOLD),
     "device.max_regs: unknown key"),
    ("unknown point key", DEVICE + point_toml(**HOLD, scal=2), "points[0].scal: unknown key"),
    ("missing key", DEVICE + point_toml(register="holding", address=0),
     "points[0].name: required key is missing"),
    ("no points", DEVICE, "points: required key is missing"),
    ("unknown type", DEVICE + point_toml(**HOLD, type="int64"), "points[0].type: should be"),
    ("unknown register kind", DEVICE + point_toml(name="a", register="holdings", address=0),
     "points[0].register: should be"),
    ("count vs type size", DEVICE + point_toml(**HOLD, type="int32", count=1),
     "points[0].count: int32 spans 2 register(s), got count = 1"),
    ("duplicate names", DEVICE + point_toml(**HOLD) + point_toml(**{**HOLD, "address": 3}),
     "points[1].name: 'a' already used by points[0]"),
    ("overlapping writes",
     DEVICE + point_toml(**HOLD, type="uint32", access="rw")
     + point_toml(name="b", register="holding", address=1, access="rw"),
     "points[1].address: 'b' (holding 1-1) overlaps writable point 'a'"),
    ("bit out of range", DEVICE + point_toml(**HOLD, type="bit", bit=16),
     "points[0].bit: expected 0-15"),
    ("bit missing", DEVICE + point_toml(**HOLD, type="bit"),
     'points[0].bit: required for type "bit"'),
    ("bit on a number", DEVICE + point_toml(**HOLD, bit=2), 'points[0].bit: only for type "bit"'),
    ("coil as a number", DEVICE + point_toml(name="c", register="coil", address=0, type="int16"),
     'points[0].type: a coil holds one bit: type must be "bool"'),
    ("scale on a coil", DEVICE + point_toml(name="c", register="coil", address=0, scale=2),
     "points[0].scale: does not apply to a coil point"),
    ("writable input register",
     DEVICE + point_toml(name="i", register="input", address=0, access="rw"),
     "points[0].access: input registers are read-only"),
    ("writable bit field", DEVICE + point_toml(**HOLD, type="bit", bit=1, access="rw"),
     "points[0].access: a bit field cannot be written alone"),
    ("alarm on a number", DEVICE + point_toml(**HOLD, alarm="lamppost.hot"),
     "points[0].alarm: only boolean points"),
    ("alarm kind not dotted", DEVICE + point_toml(**HOLD, type="bool", alarm="Hot"),
     "points[0].alarm: should match pattern"),
    ("min above max", DEVICE + point_toml(**HOLD, min=10, max=5), "points[0].min: 10.0 is greater"),
    ("zero scale", DEVICE + point_toml(**HOLD, scale=0),
     "points[0].scale: must be a finite non-zero"),
    ("past the address space", DEVICE + point_toml(**{**HOLD, "address": 65535}, type="float32"),
     "points[0].address: float32 at 65535 runs past the last address"),
    ("one-based address 0", '[device]\ntype = "t"\naddress_base = 1\n' + point_toml(**HOLD),
     "points[0].address: addresses count from 1"),
    ("value larger than a request", '[device]\ntype = "t"\nmax_registers = 1\n'
     + point_toml(**HOLD, type="float32"),
     "points[0].type: float32 spans 2 registers, device.max_registers is 1"),
    ("word order on 16 bits", DEVICE + point_toml(**HOLD, word_order="little"),
     "points[0].word_order: does not apply to a uint16 point"),
    ("bad order word", DEVICE + point_toml(**HOLD, type="int32", word_order="middle"),
     "points[0].word_order: should be 'big' or 'little'"),
    ("max_registers over the protocol", '[device]\ntype = "t"\nmax_registers = 126\n'
     + point_toml(**HOLD),
     "device.max_registers: out of range: should be less than or equal to 125"),
    ("TOML syntax", "[device\n", "TOML syntax error"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_mistakes_are_named_by_key_path(text: str, expected: str, tmp_path: Path) -> None:
    found = problems_of(text, tmp_path)
    assert any(expected in p for p in found), found


def test_all_problems_at_once(tmp_path: Path) -> None:
    bad_bit = point_toml(**HOLD, type="bit", bit=20)
    writable_input = point_toml(name="x", register="input", address=0, access="rw")
    text = DEVICE + bad_bit + point_toml(**HOLD) + writable_input
    found = problems_of(text, tmp_path)
    assert [p.split(":")[0] for p in found] == [
        "points[0].bit",
        "points[2].access",
        "points[1].name",
    ]


def test_unreadable_and_unknown_profiles(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(tmp_path / "missing.toml")
    with pytest.raises(ProfileError, match=r"^lampost: no such profile \(known: .*lamppost"):
        resolve_profile("lampost")


# --- hypothesis: the parser never fails any other way ---------------------------------

values = st.one_of(
    st.integers(-5, 70000), st.floats(allow_nan=True), st.booleans(),
    st.sampled_from(["holding", "coil", "input", "discrete", "bit", "int32", "float32",
                     "rw", "r", "big", "little", "x.y", "", "lamppost.lamp_failure"]),
)  # fmt: skip
point_keys = st.sampled_from(["name", "register", "address", "type", "bit", "count", "scale",
                              "offset", "access", "min", "max", "deadband", "alarm",
                              "word_order", "byte_order", "unit", "bogus"])  # fmt: skip
device_keys = st.sampled_from(["type", "max_registers", "max_bits", "max_gap", "word_order",
                               "address_base", "merge_requests", "request_pause"])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(device_keys, values, max_size=5),
    st.lists(st.dictionaries(point_keys, values, max_size=10), max_size=6),
)
def test_parser_only_ever_returns_a_profile_or_a_profile_error(
    device: dict[str, Any], points: list[dict[str, Any]]
) -> None:
    for p in points:  # mostly plausible points, so validation goes deep
        p.setdefault("name", f"p{len(p)}")
        p.setdefault("register", "holding")
        p.setdefault("address", 3)
    device.setdefault("type", "fuzz")
    try:
        profile = parse_profile({"device": device, "points": points}, Path("fuzz.toml"))
    except ProfileError as err:
        assert err.problems and all(":" in p for p in err.problems)
        return
    assert len(profile.points) == len(points)


# --- the [[drivers.modbus]] section ---------------------------------------------------

MINIMAL = '[gateway]\nid = "gw-1"\nsite = "town"\nstate_dir = "state"\n'


def modbus_toml(profile: str = "lamppost", name: str = "lamppost-1", extra: str = "") -> str:
    return (
        f'[[drivers.modbus]]\nname = "street"\n[[drivers.modbus.devices]]\nname = "{name}"\n'
        f'profile = "{profile}"\nhost = "127.0.0.1"\nport = 5020\n{extra}'
    )


def config_problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_config_with_profiles_by_name_and_by_path(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text(GOOD)
    custom = modbus_toml("mine.toml", "custom-1").split("\n", 2)[2].replace("5020", "5021")
    text = MINIMAL + modbus_toml() + custom
    path = tmp_path / "agent.toml"
    path.write_text(text)
    section = load_config(path).config.drivers["modbus"][0]
    assert isinstance(section, Section)
    assert [d.profile.type for d in section.devices] == ["lamppost", "test-device"]  # type: ignore[attr-defined]
    assert section.devices[1].profile.source == tmp_path / "mine.toml"  # type: ignore[attr-defined]


def test_site_profile_dirs_come_first_when_the_loader_passes_them(tmp_path: Path) -> None:
    (tmp_path / "lamppost.toml").write_text(GOOD)  # a site's own "lamppost"
    raw = {"name": "s", "devices": [{"name": "l", "profile": "lamppost", "host": "h"}]}
    shipped = Section.parse(raw)
    site = Section.parse(raw, context={"profile_dirs": [tmp_path, SHIPPED_PROFILES]})
    assert shipped.devices[0].profile.type == "lamppost"
    assert site.devices[0].profile.type == "test-device"


def test_config_names_a_broken_profile_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(GOOD.replace('type = "int32"', 'type = "int64"'))
    found = config_problems(tmp_path, MINIMAL + modbus_toml("bad.toml"))
    assert any(
        p.startswith("drivers.modbus[0].devices[0].profile:") and "bad.toml" in p
        and "points[1].type" in p for p in found
    ), found  # fmt: skip


def test_each_problem_of_a_profile_file_is_a_line_naming_the_file_once(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        GOOD.replace('type = "int32"', 'type = "int64"').replace("address = 0", "address = -1")
    )
    found = config_problems(tmp_path, MINIMAL + modbus_toml(str(bad)))
    mine = [p for p in found if p.startswith("drivers.modbus[0].devices[0].profile:")]
    assert [p.count(str(bad)) for p in mine] == [1, 1], found
    assert any("points[0].address" in p for p in mine) and any("points[1].type" in p for p in mine)
    unreadable = config_problems(tmp_path, MINIMAL + modbus_toml(str(tmp_path)))  # a directory
    assert f"drivers.modbus[0].devices[0].profile: {tmp_path}: cannot read: Is a directory" in (
        unreadable
    ), unreadable


def test_config_unknown_profile_name(tmp_path: Path) -> None:
    found = config_problems(tmp_path, MINIMAL + modbus_toml("lampost"))
    told = "drivers.modbus[0].devices[0].profile: lampost: no such profile (known:"
    assert any(p.startswith(told) for p in found), found


def test_config_duplicate_devices_and_bad_values(tmp_path: Path) -> None:
    second = modbus_toml().split("\n", 2)[2]  # the same device table again
    found = config_problems(tmp_path, MINIMAL + modbus_toml() + second)
    assert any("devices[1].name: 'lamppost-1' already used by devices[0]" in p for p in found)
    assert any("devices[1].unit: 127.0.0.1:5020 unit 1 is already devices[0]" in p for p in found)
    found = config_problems(tmp_path, MINIMAL + modbus_toml(extra="timeout = 0\nunit = 300\n"))
    assert any(p.startswith("drivers.modbus[0].devices[0].timeout") for p in found), found
    assert any(p.startswith("drivers.modbus[0].devices[0].unit") for p in found), found
    found = config_problems(tmp_path, MINIMAL + modbus_toml(extra="polling = 1\n"))
    assert "drivers.modbus[0].devices[0].polling: unknown key (did you mean 'poll_interval'?)" in (
        found
    )


def test_documented_example_in_docs_is_valid() -> None:
    """The [[drivers.modbus]] example of docs/modbus.md loads as written."""
    doc = (SHIPPED_CONFIG_DIR.parent / "docs" / "modbus.md").read_text()
    block = doc.split("```toml\n[[drivers.modbus]]", 1)[1].split("```", 1)[0]
    raw = tomllib.loads("[[drivers.modbus]]" + block)
    Section.parse(raw["drivers"]["modbus"][0])
