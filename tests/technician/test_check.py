"""`cityedge check` catches each fault with the right ✘ and remedy, against real parts:
Mosquitto (plain and mutual TLS, certificates made here), pymodbus devices, ptys,
SQLite files; the clock and the disk thresholds are injected."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from cityedge.gateway.diagnostics.clock import ClockState, fixed_clock, system_clock
from cityedge.gateway.diagnostics.context import CheckContext
from cityedge.gateway.diagnostics.field import driver_group
from cityedge.gateway.diagnostics.local import check_config
from cityedge.gateway.diagnostics.runner import run_checks
from cityedge.gateway.registry import known_kinds
from cityedge.protocol.key_files import create_key
from cityedge.sdk.checks import CheckResult, Status, worst
from cityedge.sdk.driver import DriverSection
from cityedge.street.broker import Broker, free_port
from cityedge.street.modbus import Fault, ModbusStreet
from tests.support.agent_process import to_toml
from tests.support.outbox_probe import open_outbox
from tests.technician.certs import Issued, issue, make_ca
from tests.technician.conftest import Live
from tests.technician.site import technician


def config_file(directory: Path, **sections: Any) -> Path:
    """A gateway config; the signing key is created unless `key=False`."""
    make_key = sections.pop("key", True)
    doc: dict[str, Any] = {
        "gateway": {"id": "gw-check", "site": "town-09", "state_dir": str(directory / "state")},
        "uplink": {"host": "127.0.0.1", "port": free_port()},
        "control": {"socket": str(directory / "no-agent.sock")},
    }
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    if make_key and not (directory / "state" / "keys" / "gateway.key").exists():
        create_key(directory / "state" / "keys" / "gateway.key")
    path = directory / "agent.toml"
    path.write_text(to_toml(doc))
    return path


async def check(path: Path, *groups: str, **context: Any) -> dict[str, CheckResult]:
    context = {"clock": fixed_clock(True), "network_timeout": 3, "device_timeout": 3, **context}
    ctx = CheckContext(path, **context)
    results = await run_checks(ctx, groups)
    named = {r.name: r for r in results}
    assert len(named) == len(results), "check names are unique"
    return named


def assert_fails(result: CheckResult, detail: str, remedy: str) -> None:
    assert result.status is Status.FAIL, result
    assert detail in result.detail, result
    assert remedy in result.remedy, result


# --- the broker ----------------------------------------------------------------------


async def test_broker_down_is_a_refused_connection(tmp_path: Path) -> None:
    results = await check(config_file(tmp_path), "config", "broker")
    assert results["broker.dns"].status is Status.OK
    assert_fails(
        results["broker.tcp"],
        "connection refused by 127.0.0.1:",
        "the broker is not listening there",
    )
    assert "broker.mqtt" not in results  # the layers above a failed one are not tried


async def test_unknown_broker_host_fails_at_dns(tmp_path: Path) -> None:
    path = config_file(tmp_path, uplink={"host": "broker.invalid"})
    results = await check(path, "broker")
    assert_fails(results["broker.dns"], "cannot resolve broker.invalid", "uplink.host")


async def test_a_plain_broker_passes_every_layer(tmp_path: Path) -> None:
    with Broker(workdir=tmp_path / "broker") as broker:
        path = config_file(tmp_path, uplink={"port": broker.port})
        results = await check(path, "broker")
    assert [r.status for r in results.values()] == [Status.OK] * 3
    assert "subscribed to cityedge/v2/town-09/gw-check/cmd" in results["broker.mqtt"].detail


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="no mosquitto_passwd")
async def test_a_wrong_password_is_a_refused_login(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    await asyncio.to_thread(
        subprocess.run,
        ["mosquitto_passwd", "-c", "-b", str(passwd), "gw", "right-one"],
        check=True,
        capture_output=True,
        timeout=10,
    )
    passwd.chmod(0o644)  # mosquitto reads it as its own user when run as root
    port = free_port()
    keep_user = "user root\n" if os.geteuid() == 0 else ""
    extra = f"{keep_user}listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n"
    secret = tmp_path / "gw.password"
    secret.write_text("wrong-one\n")
    secret.chmod(0o600)
    path = config_file(
        tmp_path, uplink={"port": port, "username": "gw", "password_file": str(secret)}
    )
    with Broker(port, extra_config=extra, default_listener=False, workdir=tmp_path / "b"):
        refused = (await check(path, "broker"))["broker.mqtt"]
        assert_fails(refused, "refused the login (user gw)", "uplink.username and password_file")
        assert "wrong-one" not in refused.detail
        secret.write_text("right-one\n")
        accepted = (await check(path, "broker"))["broker.mqtt"]
    assert accepted.status is Status.OK and "logged in (user gw)" in accepted.detail


@dataclass
class Pki:
    ca: Issued
    other_ca: Issued
    client: Issued
    expired: Issued
    expiring: Issued
    broker: Broker


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    """A broker with a mutual-TLS listener; certificates good, expired, expiring, foreign."""
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca(directory, "city-ca")
    other = make_ca(directory, "someone-else")
    server = issue(ca, directory, "broker", server=True)
    client = issue(ca, directory, "gw-check", server=False)
    expired = issue(
        ca,
        directory,
        "gw-expired",
        server=False,
        valid_from=dt.timedelta(days=-400),
        valid_for=dt.timedelta(days=30),
    )
    expiring = issue(
        ca,
        directory,
        "gw-expiring",
        server=False,
        valid_from=dt.timedelta(days=-355),
        valid_for=dt.timedelta(days=365),
    )
    port = free_port()
    # as root, mosquitto drops to its own user, which cannot read pytest's 0700 dirs
    keep_user = "user root\n" if os.geteuid() == 0 else ""
    listener = keep_user + (
        f"listener {port} 127.0.0.1\nallow_anonymous true\ncafile {ca.cert}\n"
        f"certfile {server.cert}\nkeyfile {server.key}\nrequire_certificate true\n"
    )
    with Broker(
        port, extra_config=listener, default_listener=False, workdir=directory / "broker"
    ) as broker:
        yield Pki(ca, other, client, expired, expiring, broker)


def tls_config(directory: Path, pki: Pki, *, ca: Issued, client: Issued) -> Path:
    uplink = {
        "port": pki.broker.port,
        "tls": True,
        "ca_file": str(ca.cert),
        "cert_file": str(client.cert),
        "key_file": str(client.key),
    }
    return config_file(directory, uplink=uplink)


async def test_mutual_tls_with_the_right_ca_and_certificate_passes(
    tmp_path: Path, pki: Pki
) -> None:
    path = tls_config(tmp_path, pki, ca=pki.ca, client=pki.client)
    results = await check(path, "broker", "certificates", "keys")
    for name in (
        "broker.tcp",
        "broker.tls",
        "broker.mqtt",
        "tls.client_cert",
        "tls.ca",
        "keys.tls",
        "keys.signing",
    ):
        assert results[name].status is Status.OK, results[name]
    assert "CN=broker" in results["broker.tls"].detail
    assert "logged in (certificate)" in results["broker.mqtt"].detail


async def test_wrong_ca_fails_the_tls_handshake(tmp_path: Path, pki: Pki) -> None:
    path = tls_config(tmp_path, pki, ca=pki.other_ca, client=pki.client)
    results = await check(path, "broker")
    assert_fails(
        results["broker.tls"],
        "the broker's certificate is not trusted",
        "uplink.ca_file must be the CA that signed the broker's certificate",
    )
    assert "broker.mqtt" not in results


async def test_an_expired_client_certificate_fails(tmp_path: Path, pki: Pki) -> None:
    path = tls_config(tmp_path, pki, ca=pki.ca, client=pki.expired)
    results = await check(path, "broker", "certificates")
    assert_fails(
        results["tls.client_cert"], "CN=gw-expired expired on", "renew the client certificate"
    )
    assert results["broker.mqtt"].status is Status.FAIL  # and the broker says no, too


async def test_a_client_certificate_near_its_end_is_a_warning(tmp_path: Path, pki: Pki) -> None:
    path = tls_config(tmp_path, pki, ca=pki.ca, client=pki.expiring)
    result = (await check(path, "certificates"))["tls.client_cert"]
    assert result.status is Status.WARN and "expires in 10 days" in result.detail
    assert "renew the client certificate" in result.remedy


# --- the gateway itself -------------------------------------------------------------


async def test_a_key_file_readable_by_others_fails(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    key = tmp_path / "state" / "keys" / "gateway.key"
    key.chmod(0o644)
    result = (await check(path, "keys"))["keys.signing"]
    assert_fails(result, "mode 0644 lets group or others at the private key", f"chmod 600 {key}")
    key.unlink()
    assert_fails(
        (await check(path, "keys"))["keys.signing"], "no such key file", "cityedge keys init"
    )


async def test_tls_key_and_password_files_are_checked_without_being_shown(tmp_path: Path) -> None:
    secret = tmp_path / "broker.password"
    secret.write_text("hunter2-never-shown")
    secret.chmod(0o644)
    path = config_file(tmp_path, uplink={"username": "gw", "password_file": str(secret)})
    result = (await check(path, "keys"))["keys.password"]
    assert_fails(result, "mode 0644 lets every user read the broker password", "chmod 600")
    secret.chmod(0o640)
    assert (await check(path, "keys"))["keys.password"].status is Status.WARN
    secret.chmod(0o600)
    result = (await check(path, "keys"))["keys.password"]
    assert result.status is Status.OK and "hunter2" not in result.detail


@pytest.mark.parametrize(
    ("state", "status", "says"),
    [
        (ClockState(False, "timedatectl", "NTPSynchronized=no"), Status.FAIL, "not synchronised"),
        (ClockState(None, "none", ""), Status.WARN, "cannot tell"),
        (ClockState(True, "adjtimex", ""), Status.OK, "synchronised (adjtimex)"),
    ],
)
async def test_the_clock_check_says_what_the_source_says(
    tmp_path: Path, state: ClockState, status: Status, says: str
) -> None:
    results = await check(config_file(tmp_path), "clock", clock=lambda: state)
    assert results["clock"].status is status and says in results["clock"].detail
    if status is Status.FAIL:
        assert "timedatectl set-ntp true" in results["clock"].remedy


def test_the_systems_clock_gives_an_answer() -> None:
    state = system_clock()
    assert state.synchronised in (True, False, None) and state.source


async def test_a_nearly_full_disk_warns_then_fails(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    failing = (await check(path, "disk", disk_warn=0.9999, disk_fail=0.9999))["disk"]
    assert_fails(failing, "% free", "free space on the filesystem")
    warning = (await check(path, "disk", disk_warn=0.9999, disk_fail=0.0))["disk"]
    assert warning.status is Status.WARN
    assert (await check(path, "disk", disk_warn=0.0, disk_fail=0.0))["disk"].status is Status.OK


async def test_outbox_integrity_read_only(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    assert (await check(path, "outbox"))["outbox"].status is Status.WARN  # not created yet
    store = open_outbox(tmp_path / "state" / "outbox.db", max_bytes=1 << 20, max_age=3600)
    store.close()
    before = (tmp_path / "state" / "outbox.db").read_bytes()
    assert (await check(path, "outbox"))["outbox"].status is Status.OK
    assert (tmp_path / "state" / "outbox.db").read_bytes() == before  # never written
    (tmp_path / "state" / "outbox.db").write_bytes(b"SQLite format 3\x00" + b"\xde\xad" * 2048)
    assert_fails((await check(path, "outbox"))["outbox"], "outbox.db", "sets a damaged store aside")


async def test_an_invalid_config_fails_by_key_path_and_skips_the_rest(tmp_path: Path) -> None:
    path = config_file(tmp_path, uplink={"port": 0})
    results = await check(path, "config", "keys", "disk", "broker")
    assert list(results) == ["config"]
    assert_fails(results["config"], "uplink.port", "cityedge config check")


# --- the street ------------------------------------------------------------------------


@pytest.mark.skipif("nmea" not in known_kinds(), reason="no serial driver (drivers/nmea) here")
async def test_serial_ports_present_missing_and_checked_once(tmp_path: Path) -> None:
    leader, follower = os.openpty()
    try:
        pty = os.ttyname(follower)
        nmea = [
            {"name": "gps", "device": "bus-gps", "port": pty},
            {"name": "gps-2", "device": "bus-gps-2", "port": "/dev/ttyCITYEDGE-missing"},
        ]
        path = config_file(tmp_path, drivers={"nmea": nmea})
        results = await check(path, "serial")
    finally:
        os.close(leader)
        os.close(follower)
    assert results[f"serial.{Path(pty).name}"].status is Status.OK
    assert_fails(
        results["serial.ttyCITYEDGE-missing"],
        "/dev/ttyCITYEDGE-missing does not exist (drivers.nmea[1].port)",
        "plug in the cable or USB adapter",
    )


async def test_a_dead_and_a_silent_modbus_device_fail_the_rest_answer(tmp_path: Path) -> None:
    async with ModbusStreet(lampposts=3, meters=0) as street:
        tables = street.driver_tables(name="street", timeout=0.3, retries=0)
        path = config_file(tmp_path, drivers={"modbus": [tables]})
        await street.switch_off("lamppost-002")
        street.set_fault("lamppost-003", Fault.SILENT)
        results = await check(path, "modbus")
    assert results["modbus.lamppost-001"].status is Status.OK
    assert "answered in" in results["modbus.lamppost-001"].detail
    for name in ("lamppost-002", "lamppost-003"):
        assert_fails(
            results[f"modbus.{name}"],
            f"{name} does not answer",
            "check the device's power and cabling",
        )
        assert "drivers.modbus[0].devices[" in results[f"modbus.{name}"].remedy


async def test_ble_adapter_present_or_not(tmp_path: Path) -> None:
    path = config_file(tmp_path, drivers={"ble": [{"name": "sensors", "adapter": "hci1"}]})
    sysfs = tmp_path / "sys"
    assert_fails(
        (await check(path, "ble", sysfs=sysfs))["ble.hci1"],
        "hci1 not found",
        "rfkill unblock bluetooth",
    )
    (sysfs / "class" / "bluetooth" / "hci1").mkdir(parents=True)
    assert (await check(path, "ble", sysfs=sysfs))["ble.hci1"].status is Status.OK


async def test_the_packet_forwarder_is_asked_of_the_running_agent(
    tmp_path: Path, live: Live
) -> None:
    """(Until drivers/lorawan lands, a config section stands in for it.)"""
    path = config_file(tmp_path)
    ctx = CheckContext(path)
    await check_config(ctx)
    assert ctx.loaded is not None
    lorawan = ctx.loaded.config.replace(drivers={"lorawan": [DriverSection(name="forwarders")]})
    ctx.loaded = replace(ctx.loaded, config=lorawan)
    check_forwarder = driver_group("lorawan")
    [alone] = await check_forwarder(ctx)
    assert alone.status is Status.WARN and "agent not running" in alone.detail
    ctx = CheckContext(path, socket=live.socket, loaded=ctx.loaded)
    [asked] = await check_forwarder(ctx)
    assert_fails(asked, "no packet forwarder heard since the agent started", "global_conf.json")


# --- the runner and the command ------------------------------------------------------------


async def test_a_crashing_or_hanging_check_is_a_failure_of_its_own(tmp_path: Path) -> None:
    async def crashes(ctx: CheckContext) -> list[CheckResult]:
        raise RuntimeError("boom")

    async def hangs(ctx: CheckContext) -> list[CheckResult]:
        await asyncio.sleep(3600)
        return []

    ctx = CheckContext(config_file(tmp_path), group_timeout=0.2)
    results = await run_checks(ctx, ("crashes", "hangs"), (("crashes", crashes), ("hangs", hangs)))
    assert [r.status for r in results] == [Status.FAIL, Status.FAIL]
    assert "crashed: RuntimeError: boom" in results[0].detail
    assert "did not finish within 0.2 s" in results[1].detail
    assert worst(results) is Status.FAIL and worst([]) is Status.OK


def test_the_command_prints_marks_and_remedies_and_exits_with_the_worst(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    (tmp_path / "state" / "keys" / "gateway.key").chmod(0o644)
    done = technician("check", "-c", str(path), "--skip", "clock", "--skip", "broker")
    assert done.returncode == 1, done.stdout + done.stderr  # a problem found (docs/cli.md)
    assert "✘ keys.signing" in done.stdout and "chmod 600" in done.stdout
    assert "✔ config" in done.stdout and "Traceback" not in done.stdout + done.stderr
    as_json = technician("check", "-c", str(path), "--only", "keys", "--json")
    assert json.loads(as_json.stdout)["status"] == "fail" and as_json.returncode == 1
    saved = json.loads((tmp_path / "state" / "last-check.json").read_text())
    assert saved["status"] == "fail"  # no agent running: kept in the state dir

    (tmp_path / "state" / "keys" / "gateway.key").chmod(0o600)
    warn = technician(
        "check", "-c", str(path), "--only", "disk", "--disk-warn", "99.99", "--disk-fail", "0"
    )
    assert warn.returncode == 1 and "⚠ disk" in warn.stdout
    fine = technician("check", "-c", str(path), "--only", "keys", "--only", "disk")
    assert fine.returncode == 0, fine.stdout
    unknown = technician("check", "-c", str(path), "--only", "wifi")
    assert unknown.returncode == 2 and "unknown check group(s) wifi" in unknown.stderr
