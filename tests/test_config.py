"""Config validation: every error names its key path and value; no tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from cityedge.gateway.config import ConfigError, load_config
from cityedge.protocol.key_files import create_key
from tests.support.agent_process import cityedge
from tests.support.demo import demo_config

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = """
[gateway]
id = "gw-1"
site = "town-01"
state_dir = "state"
"""

LAMPPOST = """
[[drivers.modbus]]
name = "street"
transport = "tcp"
[[drivers.modbus.devices]]
name = "lamppost-1"
profile = "lamppost"
host = "127.0.0.1"
port = 5020
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return info.value.problems


def test_minimal_config_loads_with_defaults(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, MINIMAL))
    cfg = loaded.config
    assert cfg.gateway.state_dir == tmp_path / "state"  # relative to the file
    assert cfg.outbox_path == tmp_path / "state" / "outbox.db"
    assert cfg.uplink.port == 1883
    assert len(loaded.digest) == 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + "[uplink]\nport = 0\n", "uplink.port: out of range"),
        (MINIMAL + "[uplink]\nport = 'eighty'\n", "uplink.port: "),
        ("[gateway]\nsite = 'x'\n", "gateway.id: required key is missing"),
        (MINIMAL + "[uplink]\nbrokr = 'x'\n", "uplink.brokr: unknown key"),
        (MINIMAL + "[[drivers.zigbee]]\nname = 'z'\n", "drivers.zigbee: unknown driver 'zigbee'"),
        (MINIMAL + "[outbox]\ncommit_interval = -1\n", "outbox.commit_interval:"),
        (MINIMAL + "[uplink]\ntls = false\nca_file = 'ca.pem'\n", "no plaintext fallback"),
        (MINIMAL + "[gateway.extra]\n", "gateway.extra: unknown key"),
        (MINIMAL + "[ble_privacy]\n", "ble_privacy: unknown key"),
        (MINIMAL + "[keys]\nrefusal_answers = -1\n", "keys.refusal_answers:"),
        (MINIMAL + "[keys]\nrefusal_window = 0\n", "keys.refusal_window:"),
    ],
)
def test_core_errors_name_the_key_path(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, text)
    assert any(expected in p for p in found), found


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    found = problems(tmp_path, "[gateway]\nid = ''\nsite = 'a b'\n[uplink]\nport = 70000\n")
    assert len(found) == 3, found
    assert any(p.startswith("gateway.id:") for p in found)
    assert any(p.startswith("gateway.site:") for p in found)
    assert any("uplink.port" in p and "70000" in p for p in found)


def test_syntax_error_and_unreadable_file(tmp_path: Path) -> None:
    assert "TOML syntax error" in problems(tmp_path, "[gateway\n")[0]
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.toml")
    assert "cannot read" in info.value.problems[0]


def test_driver_errors_carry_driver_index(tmp_path: Path) -> None:
    bad_port = LAMPPOST.replace("port = 5020", "port = 0")
    found = problems(tmp_path, MINIMAL + bad_port)
    assert any(p.startswith("drivers.modbus[0].devices[0].port") for p in found), found


def test_unreadable_profile_is_named(tmp_path: Path) -> None:
    bad = LAMPPOST.replace('profile = "lamppost"', 'profile = "profiles/nope.toml"')
    found = problems(tmp_path, MINIMAL + bad)
    assert any("drivers.modbus[0].devices[0].profile" in p and "nope.toml" in p for p in found)


def test_duplicate_driver_names(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + LAMPPOST + LAMPPOST.replace("lamppost-1", "lamppost-2"))
    assert any("drivers.modbus[1].name" in p and "already used" in p for p in found), found


@pytest.mark.parametrize("name", ["agent.example.toml", "demo.toml"])
def test_shipped_configs_are_valid(name: str) -> None:
    load_config(ROOT / "config" / name)


def test_cli_config_check_ok_and_errors(tmp_path: Path) -> None:
    # demo.toml trusts the key `cityedge demo` writes into its state dir: made here
    demo = demo_config(tmp_path / "with-key")
    state = tmp_path / "with-key" / "state"
    state.mkdir()
    key = create_key(state / "command-post.key")
    (state / "command-post.pub").write_text(key.public_text() + "\n")
    ok = cityedge("config", "check", str(demo))
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout
    missing = cityedge("config", "check", str(demo_config(tmp_path / "no-demo-yet")))
    assert "keys.trust[0]" in missing.stderr and "no such file" in missing.stderr
    example = cityedge("config", "check", str(ROOT / "config" / "agent.example.toml"))
    # Modbus TCP 1 + RTU 1, GPS 1 (its `device`), ASCII 1, BLE 2; LoRaWAN's are in its sessions file
    assert "6 driver section(s), 6 device(s)" in example.stdout, example.stdout + example.stderr
    bad = write(tmp_path, MINIMAL + "[uplink]\nport = 0\n" + "[[drivers.nope]]\nname='x'\n")
    result = cityedge("config", "check", str(bad))
    assert result.returncode == 2
    assert "uplink.port" in result.stderr and "got 0" in result.stderr
    assert "drivers.nope" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_run_refuses_bad_config(tmp_path: Path) -> None:
    bad = write(tmp_path, "[gateway]\nid = 'gw'\n")
    result = cityedge("run", "-c", str(bad), timeout=30)
    assert result.returncode == 2
    assert "gateway.site: required key is missing" in result.stderr
    assert "Traceback" not in result.stderr


def test_policy_and_lighting_are_typed_once_at_load(tmp_path: Path) -> None:
    from cityedge.gateway.lighting.program import Lighting
    from cityedge.gateway.policy import Policy

    example = load_config(ROOT / "config" / "agent.example.toml").config
    assert isinstance(example.policy, Policy) and "lamppost" in example.policy.root
    assert isinstance(example.lighting, Lighting) and example.lighting.groups
    assert not hasattr(example, "extra")  # no section is kept raw for someone to parse again
    minimal = load_config(write(tmp_path, MINIMAL)).config
    assert minimal.lighting is None
    assert minimal.policy.check_operation("lamppost", "reboot") is not None  # default deny


def test_every_file_reports_through_one_class() -> None:
    from cityedge.drivers.ascii.profile import ProfileError as AsciiProfileError
    from cityedge.drivers.lorawan.decoders import DeviceTypeError
    from cityedge.drivers.modbus.profile import ProfileError
    from cityedge.sdk.problems import FileProblems

    assert ConfigError is ProfileError is AsciiProfileError is DeviceTypeError is FileProblems
    err = FileProblems("agent.toml", ["uplink.port: out of range, got 0", "gateway.id: missing"])
    assert str(err) == "agent.toml: uplink.port: out of range, got 0; gateway.id: missing"
    assert err.render() == (
        "agent.toml: 2 problem(s)\n  uplink.port: out of range, got 0\n  gateway.id: missing"
    )
