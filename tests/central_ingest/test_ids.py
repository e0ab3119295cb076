"""Gateway and site ids are topic levels that every engine's topic mapping must keep:
`config check` refuses a '.' (RabbitMQ and NATS map '/' to '.') saying why, and the
protocol refuses to seal or open one."""

from __future__ import annotations

from pathlib import Path

import pytest

from cityedge.protocol.keys import SigningKey
from cityedge.protocol.sealing import seal
from tests.support.agent_process import cityedge, to_toml


def _config(tmp_path: Path, gateway: str, site: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(to_toml({
        "gateway": {"id": gateway, "site": site, "state_dir": str(tmp_path / "state")},
        "uplink": {"host": "127.0.0.1", "port": 1883},
    }))  # fmt: skip
    return path


@pytest.mark.parametrize(("gateway", "site", "where"), [
    ("gw.01", "town-01", "gateway.id"),
    ("gw-01", "town.north", "gateway.site"),
])  # fmt: skip
def test_config_check_refuses_a_dot_in_an_id_saying_why(
    tmp_path: Path, gateway: str, site: str, where: str
) -> None:
    done = cityedge("config", "check", str(_config(tmp_path, gateway, site)))
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert where in said
    assert "A-Z a-z 0-9 _ -" in said and "'.'" in said and "RabbitMQ" in said


def test_config_check_accepts_topic_safe_ids(tmp_path: Path) -> None:
    done = cityedge("config", "check", str(_config(tmp_path, "gw_01-A", "town-01")))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_protocol_refuses_to_seal_a_dotted_id() -> None:
    key = SigningKey.from_seed(bytes(32))
    with pytest.raises(ValueError, match=r"gateway id 'gw\.1'"):
        seal(key, gateway="gw.1", site="s", kind="telemetry", seq=1, ts=1.0,
             historical=False, entries=[])  # fmt: skip
