"""`cityedge config check` refuses what `cityedge run` refuses, through the real CLI.

One config per mistake a technician made in the field; each error names the
file, the key and the reason, and `run` refuses the very same file with the
very same words (one validation, `cityedge.gateway.validation`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.agent_process import ROOT, agent_env

BASE = """
[gateway]
id = "gw-1"
site = "town-01"
state_dir = "state"
latitude = 45.46
longitude = 9.19

[keys]
trust = []

[policy.lamppost.writes]
dimming = { min = 0, max = 100 }

[lighting.programs.standard]
steps = [{ at = "sunset", level = 100 }]
[[lighting.groups]]
name = "main"
devices = ["lamppost-101", "lamppost-102"]
program = "standard"

[[drivers.modbus]]
name = "street"
[[drivers.modbus.devices]]
name = "lamppost-101"
profile = "lamppost"
host = "127.0.0.1"
port = 5020
[[drivers.modbus.devices]]
name = "lamppost-102"
profile = "lamppost"
host = "127.0.0.1"
port = 5021
"""


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in agent_env().items() if k != "CITYEDGE_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "cityedge.cli", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env={**environment, **(env or {})},
    )  # fmt: skip


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_the_base_config_is_fine(tmp_path: Path) -> None:
    done = cli("config", "check", str(write(tmp_path, BASE)))
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout and done.stderr == ""


OVERLAPPING_PROFILE = """
[device]
type = "meter32"
[[points]]
name = "energy"
register = "holding"
address = 10
type = "uint32"
[[points]]
name = "power"
register = "holding"
address = 11
type = "uint32"
"""

MISTAKES = {
    "maintenance port out of range": (
        BASE + '[control]\nmaintenance_address = "127.0.0.1:99999"\n',
        "control.maintenance_address: port 99999 is out of range",
    ),
    "lighting group naming an unknown device": (
        BASE.replace('"lamppost-102"]', '"lampost-102"]'),
        "lighting.groups[0].devices: 'lampost-102' is no device of this config "
        "(did you mean 'lamppost-102'?)",
    ),
    "policy for a misspelt point": (
        BASE.replace("dimming = {", "dimmng = {"),
        "policy.lamppost.writes.dimmng: device type 'lamppost' has no point 'dimmng' "
        "(did you mean 'dimming'?)",
    ),
    "missing trust file": (
        BASE.replace("trust = []", 'trust = ["command-post.pub"]'),
        "keys.trust[0]: ",
    ),
    "lighting exception ending before it begins": (
        BASE + "[[lighting.exceptions]]\nfrom = 2026-12-08\nuntil = 2026-01-06\n"
        'program = "standard"\n',
        "lighting.exceptions[0]: exception for program 'standard': until 2026-01-06 is before "
        "from 2026-12-08",
    ),
    "lighting exception with a date and a range": (
        BASE + "[[lighting.exceptions]]\ndate = 2026-12-31\nfrom = 2026-12-08\n"
        'program = "standard"\n',
        "lighting.exceptions[0]: exception for program 'standard': date 2026-12-31 together "
        "with from/until",
    ),
    "yearly lighting exception with a full-date end": (
        BASE + '[[lighting.exceptions]]\nfrom = "12-08"\nuntil = 2027-01-06\n'
        'program = "standard"\n',
        "lighting.exceptions[0]: exception for program 'standard': from '12-08' and until "
        "2027-01-06: a range every year needs both ends as month-days",
    ),
    "yearly lighting exception on no day of the year": (
        BASE + '[[lighting.exceptions]]\nfrom = "02-30"\nuntil = "03-31"\nprogram = "standard"\n',
        "lighting.exceptions[0].from: '02-30' is no day of the year",
    ),
    "lighting exception with occurrences but no weekdays": (
        BASE + '[[lighting.exceptions]]\noccurrences = [1]\nprogram = "standard"\n',
        "lighting.exceptions[0]: exception for program 'standard': occurrences [1] need weekdays",
    ),
    "control socket in a missing directory": (
        BASE + '[control]\nsocket = "/nonexistent-cityedge-dir/control.sock"\n',
        "control.socket: /nonexistent-cityedge-dir does not exist",
    ),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_config_check_and_run_refuse_each_mistake_alike(tmp_path: Path, mistake: str) -> None:
    text, says = MISTAKES[mistake]
    path = write(tmp_path, text)
    checked = cli("config", "check", str(path))
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert checked.stderr.startswith(f"{path}: "), checked.stderr  # the file
    assert says in checked.stderr, checked.stderr  # the key and the reason
    assert "Traceback" not in checked.stderr
    if mistake == "missing trust file":
        assert str(tmp_path / "command-post.pub") in checked.stderr
        assert "no such file" in checked.stderr
    ran = cli("run", "-c", str(path))  # the same function says the same
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert ran.stderr == checked.stderr
    assert not (tmp_path / "state" / "outbox.db").exists()  # refused before anything ran


def test_yearly_ranges_and_occurrences_are_fine(tmp_path: Path) -> None:
    text = BASE + (
        '[[lighting.exceptions]]\nfrom = "12-08"\nuntil = "01-06"\nprogram = "standard"\n'
        '[[lighting.exceptions]]\nweekdays = ["sat"]\noccurrences = [1, -1]\n'
        'program = "standard"\n'
    )
    done = cli("config", "check", str(write(tmp_path, text)))
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout and done.stderr == ""


def test_overlapping_32_bit_points_in_a_profile(tmp_path: Path) -> None:
    profile = tmp_path / "meter32.toml"
    profile.write_text(OVERLAPPING_PROFILE)
    text = BASE + (
        '[[drivers.modbus.devices]]\nname = "meter-1"\nprofile = "meter32.toml"\n'
        'host = "127.0.0.1"\nport = 5022\n'
    )
    done = cli("config", "check", str(write(tmp_path, text)))
    assert done.returncode == 2, done.stdout + done.stderr
    assert str(profile) in done.stderr
    assert "points[1].address: 'power' (uint32, holding 11-12) overlaps 'energy'" in done.stderr


def test_the_open_page_on_every_network_is_a_warning_not_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + '[control]\nmaintenance_address = "0.0.0.0:8080"\n')
    done = cli("config", "check", str(path))
    assert done.returncode == 0, done.stderr
    assert f"{path}: warning: control.maintenance_address: 0.0.0.0:8080" in done.stderr
    assert "without a password" in done.stderr
    assert "ok" in done.stdout
    as_json = json.loads(cli("config", "check", "--json", str(path)).stdout)
    assert as_json["ok"] is True and as_json["warnings"][0].startswith(
        "control.maintenance_address: 0.0.0.0:8080"
    )


def test_config_check_honours_dash_c_and_the_environment(tmp_path: Path) -> None:
    good = write(tmp_path, BASE)
    bad = tmp_path / "bad.toml"
    bad.write_text(BASE + '[control]\nmaintenance_address = "127.0.0.1:99999"\n')
    by_option = cli("config", "check", "-c", str(bad))
    assert by_option.returncode == 2 and str(bad) in by_option.stderr
    by_env = cli("config", "check", env={"CITYEDGE_CONFIG": str(good)})
    assert by_env.returncode == 0 and str(good) in by_env.stdout, by_env.stderr
    option_wins = cli("config", "check", "-c", str(bad), env={"CITYEDGE_CONFIG": str(good)})
    assert option_wins.returncode == 2 and str(bad) in option_wins.stderr
    both = cli("config", "check", str(good), "-c", str(bad))
    assert both.returncode == 2 and both.stderr.count("\n") == 1
