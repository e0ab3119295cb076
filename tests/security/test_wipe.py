"""`cityedge wipe` leaves no key, outbox or state file behind (real files, real CLI)."""

from __future__ import annotations

from pathlib import Path

from cityedge.gateway.outbox import Entry
from cityedge.protocol.entries import reading_entry
from cityedge.protocol.key_files import create_key
from cityedge.sdk.model import Reading
from tests.support.agent_process import cityedge
from tests.support.outbox_probe import open_outbox


def test_wipe_removes_keys_outbox_and_state(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "agent.toml"
    config.write_text(f'[gateway]\nid = "gw-1"\nsite = "t"\nstate_dir = "{state}"\n')
    create_key(state / "keys" / "gateway.key")
    box = open_outbox(state / "outbox.db", max_bytes=1 << 20, max_age=1e9)
    box.add([Entry("telemetry", 1, 0.0, reading_entry(Reading("lamp", "power", 1, 0.0)))])
    box.commit()
    (state / "lorawan").mkdir()
    (state / "lorawan" / "counters.json").write_text("{}")
    refused = cityedge("wipe", "-c", str(config), input="n\n")
    assert refused.returncode == 1
    assert (state / "keys" / "gateway.key").exists()
    done = cityedge("wipe", "-c", str(config), "--yes")
    box.close()
    assert done.returncode == 0, done.stderr
    assert "wiped" in done.stdout
    left = [p for p in state.rglob("*") if p.is_file()] if state.exists() else []
    assert left == [], left
    assert config.exists()  # the config holds no secret and stays


def test_wipe_with_a_bad_config_says_why(tmp_path: Path) -> None:
    bad = tmp_path / "agent.toml"
    bad.write_text("[gateway]\n")
    result = cityedge("wipe", "-c", str(bad), "--yes")
    assert result.returncode == 2
    assert "gateway.id: required key is missing" in result.stderr
    assert "Traceback" not in result.stderr
