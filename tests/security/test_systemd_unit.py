"""The shipped unit passes systemd's own checks: `verify`, and `security` under 2.5."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The unit as shipped, with ExecStart pointing at this checkout's `cityedge`."""
    binary = Path(sys.executable).parent / "cityedge"
    assert binary.exists(), "the venv has no cityedge script (pip install -e .)"
    text = (ROOT / "systemd" / "cityedge.service").read_text()
    path = tmp_path / "cityedge.service"
    path.write_text(text.replace("/usr/bin/cityedge", str(binary)))
    return path


def test_unit_verifies(unit: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    # verify also lints units it pulls in from the host; only our unit's lines count
    ours = [line for line in done.stderr.splitlines() if unit.name in line]
    assert ours == [], done.stderr


def test_unit_exposure_is_under_threshold(unit: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=25", str(unit)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    exposure = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
    assert exposure, done.stdout[-2000:] + done.stderr
    print(f"\nsystemd-analyze security: exposure {exposure.group(1)} (threshold 2.5)")
    assert done.returncode == 0, done.stdout[-3000:]
    assert float(exposure.group(1)) <= 2.5


def test_unit_declares_what_the_agent_needs() -> None:
    text = (ROOT / "systemd" / "cityedge.service").read_text()
    needed = (
        "Type=notify", "WatchdogSec=", "Restart=on-failure", "User=cityedge",
        "StateDirectory=cityedge", "ConfigurationDirectory=cityedge", "NoNewPrivileges=yes",
        "ProtectSystem=strict", "DevicePolicy=closed", "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service", "MemoryMax=",
    )  # fmt: skip
    for line in needed:
        assert line in text, line
