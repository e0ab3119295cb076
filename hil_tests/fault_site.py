"""What the fault-injection suites share: the site they run on (a private
Mosquitto, simulated lampposts, a verifying command post, the agent's config),
their time scale, and the reliability table they fill (test-artifacts/
reliability.json; docs/reliability.md with CITYEDGE_WRITE_RELIABILITY=1).
The `site` fixture itself is in conftest.py.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cityedge.protocol.keys import SigningKey
from cityedge.street.broker import Broker
from cityedge.street.modbus import ModbusStreet
from tests.support.agent_process import to_toml
from tests.support.command_post import CommandPost

ROOT = Path(__file__).resolve().parents[1]
# CITYEDGE_SOAK=1 (the README's knob for long runs) means ten times the kills and
# outages; CITYEDGE_FAULT_SCALE=N picks another multiple.
SOAK_SCALE = 10 if os.environ.get("CITYEDGE_SOAK") else 1
SCALE = max(1, int(os.environ.get("CITYEDGE_FAULT_SCALE") or SOAK_SCALE))
ARTIFACTS = ROOT / "test-artifacts"
RESULTS: dict[str, dict[str, Any]] = {}


@dataclass
class Row:
    scenario: str
    produced: int
    delivered: int
    duplicated: int
    lost: int
    recover_s: float
    note: str = ""


def record(row: Row) -> None:
    RESULTS[row.scenario] = asdict(row)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "reliability.json").write_text(json.dumps(RESULTS, indent=2))
    if os.environ.get("CITYEDGE_WRITE_RELIABILITY"):
        write_doc()


def write_doc() -> None:
    lines = [
        "| scenario | produced | delivered | duplicated (before dedupe) | lost | time to recover "
        "| notes |",
        "|---|---|---|---|---|---|---|",
    ]
    doc = ROOT / "docs" / "reliability.md"
    text = doc.read_text()
    start, end = "<!-- table:start -->", "<!-- table:end -->"
    head, _, rest = text.partition(start)
    table, _, tail = rest.partition(end)
    # A run of some scenarios (one file, one -k) replaces their rows and keeps the others'.
    rows = {line.split("|")[1].strip(): line for line in table.strip().splitlines()[2:]}
    for r in RESULTS.values():
        rows[r["scenario"]] = (
            f"| {r['scenario']} | {r['produced']} | {r['delivered']} | {r['duplicated']} | "
            f"{r['lost']} | {r['recover_s']:.1f} s | {r['note']} |"
        )
    lines += rows.values()
    doc.write_text(f"{head}{start}\n" + "\n".join(lines) + f"\n{end}{tail}")


@dataclass
class Site:
    tmp: Path
    broker: Broker
    street: ModbusStreet
    key: SigningKey
    post: CommandPost
    config: Path

    @property
    def db(self) -> Path:
        return self.tmp / "state" / "outbox.db"

    def polls(self) -> int:
        return sum(self.street.read_requests(d.name) for d in self.street.devices)

    def delivered(self) -> set[tuple[str, str, float]]:
        return {(r.reading.device, r.reading.point, r.reading.ts) for r in self.post.readings}


def write_config(tmp: Path, port: int, street: ModbusStreet, **extra: dict[str, Any]) -> Path:
    doc: dict[str, Any] = {
        "gateway": {"id": "gw-fault", "site": "lab", "state_dir": str(tmp / "state")},
        "uplink": {
            "host": "127.0.0.1",
            "port": port,
            "reconnect_min": 0.2,
            "reconnect_max": 1.0,
            "connect_timeout": 3.0,
            "batch_interval": 0.05,
        },
        "outbox": {"commit_interval": 0.1},
        "pipeline": {"full_report_interval": 0.001},
        "logging": {"level": "info", "format": "json"},
        "drivers": {"modbus": [street.driver_tables(name="street", poll_interval=0.2)]},
    }
    for name, values in extra.items():
        doc.setdefault(name, {}).update(values)
    path = tmp / "agent.toml"
    path.write_text(to_toml(doc))
    return path
