"""The technician CLI, run as the real `cityedge` executable against a running agent:
three simulated lamppost controllers (pymodbus servers), a private Mosquitto, the
agent subprocess with its control socket."""

from __future__ import annotations

import json
import os
import pwd
import tarfile
from pathlib import Path
from typing import Any

import pytest

from cityedge.sdk import __version__
from tests.technician.conftest import Site
from tests.technician.site import technician, wait_until

ME = pwd.getpwuid(os.getuid()).pw_name


def ask(site: Site, *args: str) -> Any:
    done = technician(*args, "--json", "-c", str(site.config))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def dimming(site: Site, device: str) -> object:
    return site.street.street.register(device, "dimming")


def test_status_says_uplink_outbox_devices_clock_and_version(site: Site) -> None:
    def ready() -> bool:
        data = ask(site, "status")
        return bool(data["uplink"]["state"] == "up" and data["devices"]["up"] == 3)

    assert wait_until(ready, timeout=30), site.agent.logs()[-3000:]
    data = ask(site, "status")
    assert data["version"] == __version__
    assert data["gateway"] == {"id": "gw-tech", "site": "town-07"}
    assert data["uptime"] > 0
    assert data["uplink"]["broker"] == f"127.0.0.1:{site.broker.port}"
    assert {"depth", "bytes", "oldest_age", "sealed_unacked"} <= set(data["outbox"])
    assert set(data["clock"]) == {"synchronised", "source", "detail"}
    assert [d["name"] for d in data["drivers"]] == ["street"]
    assert data["drivers"][0]["running"] is True

    shown = technician("status", "--socket", str(site.socket))
    assert shown.returncode == 0, shown.stderr
    assert "gw-tech" in shown.stdout
    assert "3 up" in shown.stdout
    assert f"127.0.0.1:{site.broker.port}" in shown.stdout


def test_devices_lists_every_device_with_its_health(site: Site) -> None:
    assert wait_until(lambda: all(d["state"] == "up" for d in ask(site, "devices")), 30)
    data = ask(site, "devices")
    assert [d["device"] for d in data] == ["lamppost-001", "lamppost-002", "lamppost-003"]
    for device in data:
        assert device["driver"] == "street"
        assert device["type"] == "lamppost"
        assert device["last_seen"] is not None
        assert device["requests"] > 0
    table = technician("devices", "-c", str(site.config))
    assert table.returncode == 0, table.stderr
    for name in ("lamppost-001", "lamppost-002", "lamppost-003"):
        assert name in table.stdout


def test_read_is_a_live_read_through_the_driver(site: Site) -> None:
    before = site.street.street.read_requests("lamppost-001")
    data = ask(site, "read", "lamppost-001", "dimming")
    assert data["type"] == "lamppost"
    [reading] = data["readings"]
    assert reading["point"] == "dimming"
    assert reading["value"] == dimming(site, "lamppost-001")
    assert reading["unit"] == "%"
    assert site.street.street.read_requests("lamppost-001") > before

    everything = ask(site, "read", "lamppost-001")
    assert {"lamp_on", "dimming", "power", "voltage"} <= {
        r["point"] for r in everything["readings"]
    }
    table = technician("read", "lamppost-001", "dimming", "lamp_on", "-c", str(site.config))
    assert table.returncode == 0, table.stderr
    assert "dimming" in table.stdout and "lamp_on" in table.stdout


def test_write_is_a_time_limited_override_restored_and_audited(site: Site) -> None:
    device = "lamppost-002"
    before = dimming(site, device)
    assert before != 35
    done = technician("write", device, "dimming", "35", "--for", "2s", "-c", str(site.config))
    assert done.returncode == 0, done.stderr
    assert f"{device}.dimming = 35" in done.stdout
    assert dimming(site, device) == 35

    overrides = ask(site, "status")["overrides"]
    in_force = [o for o in overrides if o["device"] == device]
    if in_force:  # (the status may come after the 2 s on a slow machine)
        assert in_force[0]["previous"] == before
        assert in_force[0]["user"] == ME

    assert wait_until(lambda: dimming(site, device) == before, timeout=30), site.agent.logs()[
        -2000:
    ]
    assert wait_until(lambda: not ask(site, "status")["overrides"], timeout=10)
    logged = [json.loads(line) for line in site.agent.logs().splitlines() if line.startswith("{")]
    started = [e for e in logged if e.get("event") == "control.override"]
    assert started and started[-1]["uid"] == os.getuid() and started[-1]["user"] == ME
    assert any(e.get("event") == "control.override_restored" for e in logged)
    audited = [e for e in logged if e.get("event") == "control.request" and e.get("op") == "write"]
    assert audited and all(e["uid"] == os.getuid() for e in audited)


def test_an_override_can_be_ended_early(site: Site) -> None:
    device = "lamppost-003"
    before = dimming(site, device)
    done = technician("write", device, "dimming", "10", "--for", "1h", "-c", str(site.config))
    assert done.returncode == 0, done.stderr
    assert dimming(site, device) == 10
    ended = technician("write", device, "dimming", "--end", "-c", str(site.config))
    assert ended.returncode == 0, ended.stderr
    assert wait_until(lambda: dimming(site, device) == before, timeout=30)


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["read", "lamppost-0O1"], 1, "unknown device 'lamppost-0O1'; did you mean lamppost-001"),
        (["read", "lamppost-001", "colour"], 1, "has no point 'colour'"),
        (["write", "lamppost-001", "dimming", "150"], 1, "denied by local policy: 150"),
        (["write", "lamppost-001", "power", "5"], 1, "denied by local policy"),
        (["write", "lamppost-001", "dimming", "bright"], 1, "bad value for lamppost-001.dimming"),
        (["write", "lamppost-001", "lamp_on", "maybe"], 1, "expected on/off"),
        (["write", "lamppost-001", "dimming", "50", "--for", "soon"], 2, "--for: duration"),
        (["write", "lamppost-001", "dimming", "50", "--for", "3d"], 1, "an override lasts"),
        (["write", "lamppost-001", "dimming"], 2, "write needs a VALUE"),
        (["write", "nowhere", "dimming", "--end"], 1, "no override in force"),
    ],
)
def test_bad_input_is_one_clear_line_and_a_non_zero_exit(
    site: Site, args: list[str], code: int, says: str
) -> None:
    before = site.street.street.write_requests("lamppost-001")
    done = technician(*args, "-c", str(site.config))
    assert done.returncode == code, (done.stdout, done.stderr)
    assert says in done.stderr
    assert done.stderr.startswith("cityedge: ")
    assert done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert site.street.street.write_requests("lamppost-001") == before  # nothing reached it


def test_no_agent_is_one_clear_line_too(tmp_path: Path) -> None:
    missing = technician("status", "--socket", str(tmp_path / "control.sock"))
    assert missing.returncode == 3
    assert "no control socket at" in missing.stderr and "is the agent running" in missing.stderr
    no_config = technician("devices", "-c", str(tmp_path / "nope.toml"))
    assert no_config.returncode == 2
    assert "cannot find the control socket" in no_config.stderr
    for done in (missing, no_config):
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_outbox_stats_come_from_the_running_agent(site: Site) -> None:
    data = ask(site, "outbox")
    assert data["source"] == "agent"
    assert data["path"] == str(site.directory / "state" / "outbox.db")
    assert data["last_seq"] > 0
    shown = technician("outbox", "-c", str(site.config))
    assert shown.returncode == 0 and "from the agent" in shown.stdout


def test_check_reads_modbus_devices_through_the_running_agent(site: Site) -> None:
    done = technician("check", "--only", "modbus", "--only", "broker", "-c", str(site.config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("answered the running agent") == 3
    assert "✔ broker.mqtt" in done.stdout
    last = ask(site, "status")  # recorded for the maintenance page: the agent kept it
    assert last["gateway"]["id"] == "gw-tech"


def test_support_bundle_with_the_agent_running_has_its_health(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "bundle.tar.gz"
    done = technician("support-bundle", "-c", str(site.config), "-o", str(out), "--no-checks")
    assert done.returncode == 0, done.stderr
    with tarfile.open(out) as tar:
        members = {m.name.split("/", 1)[1]: tar.extractfile(m) for m in tar.getmembers()}
        devices = json.load(members["agent/devices.json"])  # type: ignore[arg-type]
        status = json.load(members["agent/status.json"])  # type: ignore[arg-type]
    assert len(devices) == 3
    assert status["gateway"]["id"] == "gw-tech"
    data = out.read_bytes()
    import gzip

    assert b"PRIVATE KEY" not in gzip.decompress(data)


def test_the_agent_serves_its_maintenance_page_and_metrics(site: Site) -> None:
    base = f"http://127.0.0.1:{site.page_port}"
    assert wait_until(lambda: _get(base + "/healthz") == b"ok\n", timeout=20)
    page = _get(base + "/").decode()
    assert "lamppost-001" in page and "gw-tech" in page
    metrics = _get(base + "/metrics").decode()
    assert 'cityedge_device_up{device="lamppost-003",driver="street",kind="modbus"}' in metrics


def _get(url: str) -> bytes:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return bytes(answer.read())
    except (urllib.error.URLError, ConnectionError):
        return b""
