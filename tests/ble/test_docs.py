"""docs/ble.md cannot drift: its sample config loads, and every point name is in it."""

from __future__ import annotations

import re
from pathlib import Path

from cityedge.drivers.ble.bthome import POINT_NAMES
from cityedge.drivers.ble.config import DeviceSection, GattSchedule, Section
from cityedge.gateway.config import load_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "ble.md"
GATEWAY = '[gateway]\nid = "gw-1"\nsite = "town-01"\nstate_dir = "state"\n\n'


def test_sample_config_in_docs_loads(tmp_path: Path) -> None:
    text = DOC.read_text()
    (sample,) = re.findall(r"```toml\n(.*?)```", text, flags=re.S)
    path = tmp_path / "agent.toml"
    path.write_text(GATEWAY + sample)
    (section,) = load_config(path).config.drivers["ble"]
    assert isinstance(section, Section)
    assert [d.name for d in section.devices] == ["shelter-12-thermo", "cabinet-12-door"]
    assert section.devices[1].gatt is not None
    # every key of the models is explained in the sample
    for key in [*Section.table_keys(), *DeviceSection.table_keys(), *GattSchedule.table_keys()]:
        assert re.search(
            rf"^({key} = |\[+drivers\.ble\.(devices\.)?{key}\]+)", sample, flags=re.M
        ), key


def test_every_point_name_is_documented() -> None:
    text = DOC.read_text()
    missing = sorted(p for p in POINT_NAMES if f"`{p}`" not in text)
    assert not missing
