"""The serial drivers know nothing of MQTT, the outbox or signing: of cityedge they
import the driver SDK only; and checking a config does not load pyserial."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("nmea", "ascii", "serialline")
ALLOWED_AGENT = {
    "cityedge.sdk.backoff",
    "cityedge.sdk.health",
    "cityedge.sdk.limits",
    "cityedge.sdk.model",
    "cityedge.sdk.driver",
    "cityedge.sdk.problems",
    "cityedge.sdk.tables",
    "cityedge.sdk.tomlfile",
}
FORBIDDEN = ("aiomqtt", "paho", "msgpack", "cryptography", "sqlite3", "cityedge.drivers.modbus",
             "cityedge.drivers.ble")  # fmt: skip


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize(
    "path",
    sorted(p for pkg in PACKAGES for p in (ROOT / "drivers/cityedge/drivers" / pkg).glob("*.py")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_a_driver_imports_only_what_it_may(path: Path) -> None:
    names = imports(path)
    agent = {n for n in names if n.startswith("cityedge.") and not n.startswith("cityedge.drivers")}
    assert agent <= ALLOWED_AGENT, agent - ALLOWED_AGENT
    assert not [n for n in names if n.startswith(FORBIDDEN)]


def test_checking_a_config_does_not_load_pyserial() -> None:
    script = (
        "import sys\n"
        "from cityedge.gateway.config import validate_config\n"
        "validate_config({'gateway': {'id': 'g', 'site': 's'}, 'drivers': {"
        "'nmea': [{'name': 'gps', 'device': 'gps', 'port': '/dev/ttyUSB0'}],"
        "'ascii': [{'name': 'p', 'port': '/dev/ttyUSB1',"
        " 'devices': [{'name': 'panel', 'profile': 'info-panel'}]}]}})\n"
        "print('serial' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    assert out.stdout.strip() == "False"
