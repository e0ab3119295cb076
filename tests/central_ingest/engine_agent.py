"""The agent config the engine tests run: the simulated street polled every 0.2 s, every
value reported, many small MQTT 3.1.1 messages (RabbitMQ 3.10's MQTT plugin speaks no
MQTT 5) — many sequence numbers for the ledger to check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cityedge.street.modbus import ModbusStreet
from tests.support.agent_process import to_toml


def engine_agent_config(
    tmp_path: Path, mqtt_port: int, street: ModbusStreet, *,
    trust: list[str] | None = None, uplink: dict[str, Any] | None = None,
) -> Path:  # fmt: skip
    """Write `agent.toml` in `tmp_path`; `uplink` entries override the defaults here."""
    doc: dict[str, Any] = {
        "gateway": {"id": "gw-test", "site": "town-01", "state_dir": str(tmp_path / "state")},
        "uplink": {
            "host": "127.0.0.1",
            "port": mqtt_port,
            "mqtt_version": "3.1.1",
            "batch_interval": 0.05,
            "batch_max_readings": 5,
            "connect_timeout": 5.0,
            **(uplink or {}),
        },
        "outbox": {"commit_interval": 0.1},
        "pipeline": {"full_report_interval": 0.001},  # every polled value goes up: countable
        "logging": {"level": "info", "format": "json"},
        "drivers": {"modbus": [street.driver_tables(name="street", poll_interval=0.2)]},
    }
    if trust is not None:
        doc["keys"] = {"trust": trust}
    path = tmp_path / "agent.toml"
    path.write_text(to_toml(doc))
    return path
