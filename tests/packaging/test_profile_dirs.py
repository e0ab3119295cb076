"""`gateway.profile_dirs`: site profile folders, searched before the shipped ones
(which come from the package data `cityedge.shipped`), through the real CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cityedge.sdk.driver import SHIPPED_CONFIG_DIR, shipped_config_dir
from tests.support.agent_process import cityedge, to_toml

LAMPPOST = (SHIPPED_CONFIG_DIR / "profiles" / "lamppost.toml").read_text()


def write(tmp_path: Path, profile_dirs: list[str], modbus: str, ascii_: str | None) -> Path:
    doc: dict[str, Any] = {
        "gateway": {"id": "gw", "site": "s", "state_dir": "state", "profile_dirs": profile_dirs},
        "drivers": {
            "modbus": [
                {"name": "bus", "devices": [{"name": "d", "profile": modbus, "host": "127.0.0.1"}]}
            ]
        },
    }
    if ascii_:
        doc["drivers"]["ascii"] = [
            {"name": "line", "port": "/dev/null", "devices": [{"name": "p", "profile": ascii_}]}
        ]
    path = tmp_path / "agent.toml"
    path.write_text(to_toml(doc))
    return path


def test_the_shipped_folder_is_the_package_data() -> None:
    assert shipped_config_dir() == SHIPPED_CONFIG_DIR
    assert (SHIPPED_CONFIG_DIR / "__init__.py").is_file()
    assert (SHIPPED_CONFIG_DIR / "lorawan" / "waste-bin.toml").is_file()


def test_a_site_profile_is_found_by_name_relative_to_the_config(tmp_path: Path) -> None:
    site = tmp_path / "site-profiles"
    (site / "ascii").mkdir(parents=True)
    (site / "streetlight.toml").write_text(LAMPPOST.replace('type = "lamppost"', 'type = "sl"'))
    panel = SHIPPED_CONFIG_DIR / "profiles" / "ascii" / "info-panel.toml"
    (site / "ascii" / "site-panel.toml").write_text(panel.read_text())
    config = write(tmp_path, ["site-profiles"], "streetlight", "site-panel")
    checked = cityedge("config", "check", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_shipped_profiles_still_resolve_beside_site_folders(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    config = write(tmp_path, ["site"], "lamppost", "info-panel")
    checked = cityedge("config", "check", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_missing_site_folder_and_an_unknown_profile_are_named(tmp_path: Path) -> None:
    config = write(tmp_path, ["nowhere"], "streetlight", None)
    checked = cityedge("config", "check", str(config))
    out = checked.stdout + checked.stderr
    assert checked.returncode == 2, out
    assert "profile_dirs: not a folder: " + str(tmp_path / "nowhere") in out, out
    assert "streetlight: no such profile (known: energy-meter, lamppost" in out, out


def test_a_site_profile_comes_before_the_shipped_one_of_the_same_name(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "lamppost.toml").write_text("this is not TOML [")
    config = write(tmp_path, ["site"], "lamppost", None)
    checked = cityedge("config", "check", str(config))
    out = checked.stdout + checked.stderr
    assert checked.returncode == 2, out
    assert str(site / "lamppost.toml") in out, out
