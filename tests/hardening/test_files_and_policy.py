"""Issue 19 hardening, each on real parts: the daemon's files are not world-readable
whatever umask it inherits; secrets others can read stop the start with the remedy;
the local policy denies integers on on/off points before a device is touched."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from cityedge.drivers.modbus.config import Section
from cityedge.gateway.commands.write import write_point
from cityedge.gateway.config import check_secret_files, load_config
from cityedge.gateway.policy import load_policy
from cityedge.gateway.registry import build_driver
from cityedge.protocol.key_files import create_key
from cityedge.sdk.driver import DriverEnv
from cityedge.sdk.model import Command, ResultCode, Value
from cityedge.street.broker import free_port
from cityedge.street.modbus import ModbusStreet
from tests.support.agent_process import AgentProcess, cityedge, to_toml
from tests.technician.site import StreetThread, wait_until


def gateway_doc(directory: Path, **uplink: object) -> dict[str, object]:
    return {
        "gateway": {"id": "gw-h", "site": "town-19", "state_dir": str(directory / "state")},
        "uplink": {"host": "127.0.0.1", "port": free_port(), "reconnect_max": 1.0, **uplink},
        "logging": {"format": "json"},
    }


def test_the_daemon_creates_no_file_others_can_read_under_umask_022(tmp_path: Path) -> None:
    create_key(tmp_path / "state" / "keys" / "gateway.key")
    with StreetThread(lampposts=2) as street:
        doc = gateway_doc(tmp_path)
        doc["drivers"] = {"modbus": [street.street.driver_tables(poll_interval=0.2)]}
        config = tmp_path / "agent.toml"
        config.write_text(to_toml(doc))
        agent = AgentProcess(config)
        inherited = os.umask(0o022)  # what a login shell or a careless unit passes on
        try:
            agent.start()
        finally:
            os.umask(inherited)
        try:
            state = tmp_path / "state"
            made = wait_until(
                lambda: (state / "outbox.db").exists() and (state / "replay.db").exists(), 30
            )
            assert made, agent.logs()
            assert agent.wait_for_log("agent.start", 30), agent.logs()
            time.sleep(1.0)  # readings committed: the WAL files exist too
        finally:
            assert agent.stop() == 0, agent.logs()[-3000:]
    files = [p for p in state.rglob("*") if p.is_file()]
    assert {"outbox.db", "replay.db"} <= {p.name for p in files}
    readable = {str(p): f"{stat.S_IMODE(p.stat().st_mode):04o}" for p in files
                if p.stat().st_mode & 0o007}  # fmt: skip
    assert readable == {}


def test_secret_files_others_can_read_stop_the_start_with_the_remedy(tmp_path: Path) -> None:
    key_file, password_file = tmp_path / "client.key", tmp_path / "broker.password"
    for path, text in ((key_file, "-----BEGIN PRIVATE KEY-----\n"), (password_file, "s3cret\n")):
        path.write_text(text)
        path.chmod(0o644)
    (tmp_path / "client.crt").write_text("certificate\n")
    doc = gateway_doc(tmp_path, tls=True, cert_file=str(tmp_path / "client.crt"),
                      key_file=str(key_file), username="gw-h",
                      password_file=str(password_file))  # fmt: skip
    config = tmp_path / "agent.toml"
    config.write_text(to_toml(doc))
    refused = cityedge("run", "-c", str(config), timeout=60)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    for path in (key_file, password_file):
        assert f"{path} has mode 0644" in refused.stderr
        assert f"chmod 600 {path}" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "state" / "outbox.db").exists()  # refused before any file
    password_file.chmod(0o640)  # the group may not read it either: the gateway key's rule
    key_file.chmod(0o600)
    refused = cityedge("run", "-c", str(config), timeout=60)
    assert refused.returncode == 2 and str(key_file) not in refused.stderr
    assert f"chmod 600 {password_file}" in refused.stderr
    password_file.chmod(0o600)
    check_secret_files(load_config(config).config, str(config))  # nothing to refuse now


async def test_integers_on_an_on_off_point_are_denied_before_the_device(tmp_path: Path) -> None:
    policy = load_policy({"lamppost": {"writes": {"lamp_on": {}}}})  # no choices: any flag
    async with ModbusStreet(lampposts=1, meters=0) as street:
        section = Section.parse(street.driver_tables(name="street", timeout=1.0))
        driver = build_driver("modbus", section, DriverEnv(tmp_path, tmp_path))

        async def read(device: str, point: str) -> Value | None:
            return (await driver.read(device, [point]))[0].value

        async def write(value: Value) -> ResultCode:
            now = time.time()
            args = {"point": "lamp_on", "value": value}
            cmd = Command("c", "gw-h", "lamppost-001", "write", args, now, now + 60, "k")
            result = await write_point(cmd, catalogue=driver.catalogue, policy=policy,
                                       write=driver.write, read=read, timeout=5)  # fmt: skip
            return result.code

        before = street.write_requests("lamppost-001")
        for value in (7, 1, 0, -1, 2.0, "on"):
            assert await write(value) == ResultCode.DENIED, value
        assert street.write_requests("lamppost-001") == before  # never reached the device
        assert await write(False) == ResultCode.DONE
        assert street.register("lamppost-001", "lamp_on") is False
