"""The daemon imports only what its config needs (#3: <= 40 MB resident).

Measured by bench/street_poll.py; here we pin the cause: the libraries a
Modbus-only gateway must never load, each with what it would cost.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from cityedge.protocol.key_files import create_key
from tests.support.agent_process import ROOT, agent_env, to_toml

NOT_FOR_A_MODBUS_GATEWAY = {
    "pydantic": "config validation is agent.tables",
    "cryptography": "Ed25519 is PyNaCl; AES only for LoRaWAN/BLE",
    "typer": "the CLI toolkit stays out of `cityedge run`",
    "click": "the CLI toolkit stays out of `cityedge run`",
    "rich": "structlog would pick it up for console logs",
    "prometheus_client": "only with control.maintenance_address",
    "astral": "only with a [lighting] table",
    "bleak": "only with [[drivers.ble]]",
}

PROBE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from cityedge.cli.daemon import lean_daemon_imports
    lean_daemon_imports()
    from cityedge.gateway.config import load_config
    from cityedge.gateway.runtime import Agent
    Agent(load_config(Path(sys.argv[1])))
    print(json.dumps(sorted({m.split(".")[0] for m, mod in sys.modules.items() if mod})))
    """
)


def test_a_modbus_gateway_loads_none_of_the_heavy_libraries(tmp_path: Path) -> None:
    create_key(tmp_path / "state" / "keys" / "gateway.key")
    config = tmp_path / "agent.toml"
    doc = {
        "gateway": {"id": "gw-1", "site": "town", "state_dir": str(tmp_path / "state")},
        "uplink": {"host": "127.0.0.1", "port": 1},
        "drivers": {
            "modbus": [
                {
                    "name": "street",
                    "devices": [{"name": "lamppost-1", "profile": "lamppost",
                                 "host": "127.0.0.1", "port": 1}],
                }
            ]
        },
    }  # fmt: skip
    config.write_text(to_toml(doc))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(config)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=agent_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "nacl" in loaded and "pymodbus" in loaded  # the probe did build the agent
    found = {name: why for name, why in NOT_FOR_A_MODBUS_GATEWAY.items() if name in loaded}
    assert not found, found
