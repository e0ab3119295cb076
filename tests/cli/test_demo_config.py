"""Which demo config `cityedge demo` runs when none is named: never one whose state
would land inside an installed package."""

from __future__ import annotations

from pathlib import Path

import pytest

from cityedge.street.demo import DEMO_CONFIG, default_demo_config


def test_a_checkout_runs_its_own_demo_config() -> None:
    assert default_demo_config() == DEMO_CONFIG


def test_an_installed_wheel_runs_a_copy_in_the_users_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = tmp_path / "venv/lib/python3.11/site-packages/cityedge/shipped/demo.toml"
    shipped.parent.mkdir(parents=True)
    shipped.write_text(DEMO_CONFIG.read_text())
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))

    chosen = default_demo_config(shipped)

    assert chosen == tmp_path / "state/cityedge/demo/config/demo.toml"
    assert chosen.read_text() == shipped.read_text()
    # its relative state dir now resolves beside the copy, not inside site-packages
    state = (chosen.parent / "../.demo-state").resolve()
    assert state == tmp_path / "state/cityedge/demo/.demo-state"
    shipped.write_text(shipped.read_text() + "\n# upgraded\n")
    assert default_demo_config(shipped).read_text().endswith("# upgraded\n")
