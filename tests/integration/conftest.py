"""Fixtures for end-to-end runs: a private broker, a gateway key, a config writer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cityedge.protocol.key_files import create_key
from cityedge.protocol.keys import SigningKey
from cityedge.street.broker import Broker
from tests.support.agent_process import to_toml


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(workdir=tmp_path / "broker") as running:
        yield running


@pytest.fixture
def gateway_key(tmp_path: Path) -> SigningKey:
    return create_key(tmp_path / "state" / "keys" / "gateway.key")


ConfigWriter = Callable[..., Path]


@pytest.fixture
def write_config(tmp_path: Path, broker: Broker, gateway_key: SigningKey) -> ConfigWriter:
    """Write an agent config for this test's broker and state dir; returns its path."""

    def write(modbus: list[dict[str, Any]] | None = None, **sections: dict[str, Any]) -> Path:
        doc: dict[str, Any] = {
            "gateway": {"id": "gw-test", "site": "town-01", "state_dir": str(tmp_path / "state")},
            "uplink": {
                "host": "127.0.0.1",
                "port": broker.port,
                "reconnect_min": 0.2,
                "reconnect_max": 1.0,
                "batch_interval": 0.05,
                "connect_timeout": 3.0,
            },
            "outbox": {"commit_interval": 0.1},
            "pipeline": {"full_report_interval": 0.001},  # every polled value goes up: countable
            "logging": {"level": "info", "format": "json"},
        }
        for name, values in sections.items():
            doc.setdefault(name, {}).update(values)
        if modbus:
            doc["drivers"] = {"modbus": modbus}
        path = tmp_path / "agent.toml"
        path.write_text(to_toml(doc))
        return path

    return write
