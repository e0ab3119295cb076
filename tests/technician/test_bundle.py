"""The support bundle never carries a private key or a password; the outbox can be
exported with the agent stopped, read-only."""

from __future__ import annotations

import gzip
import hashlib
import json
import stat
import tarfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.gateway.control.client import ControlClient
from cityedge.gateway.diagnostics.redact import REDACTED, redact, scrub
from cityedge.protocol.key_files import create_key, load_signing_key
from cityedge.street.broker import free_port
from tests.technician.certs import issue, make_ca
from tests.technician.site import (
    StreetThread,
    TechnicianAgent,
    remove,
    short_dir,
    technician,
    wait_until,
    write_config,
)

PASSWORD = "S3cr3t-broker-pass-8c1f"
BINDKEY = "5a1e0c0ffee15bad5eed0fcafe0b0a7d"
MARKERS = (b"PRIVATE KEY", b"-----BEGIN", PASSWORD.encode(), BINDKEY.encode())


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        out = {}
        for member in tar.getmembers():
            data = tar.extractfile(member)
            assert data is not None
            out[member.name.split("/", 1)[1]] = data.read()
    return out


def test_a_support_bundle_never_holds_a_private_key_or_the_password(tmp_path: Path) -> None:
    key = create_key(tmp_path / "state" / "keys" / "gateway.key")
    ca = make_ca(tmp_path / "tls", "ca")
    client = issue(ca, tmp_path / "tls", "gw-tech", server=False)
    password_file = tmp_path / "broker.password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    log = tmp_path / "agent.log"
    log.write_text(
        '{"event": "agent.start", "gateway": "gw-tech"}\n'
        "someone pasted a key here:\n"
        + key.private_pem().decode()
        + "\n"
        + client.key.read_text()
        + '{"event": "uplink.down", "reason": "connection refused"}\n'
    )
    ble = [
        {
            "name": "sensors",
            "adapter": "hci0",
            "devices": [{"name": "bin-07", "address": "A4:C1:38:8D:18:B2", "bindkey": BINDKEY}],
        }
    ]
    config = write_config(
        tmp_path,
        broker_port=free_port(),
        socket=tmp_path / "c.sock",
        uplink={
            "tls": True,
            "ca_file": str(ca.cert),
            "cert_file": str(client.cert),
            "key_file": str(client.key),
            "username": "gw-tech",
            "password_file": str(password_file),
        },
        drivers={"ble": ble},
    )
    out = tmp_path / "bundle.tar.gz"
    done = technician(
        "support-bundle",
        "-c",
        str(config),
        "-o",
        str(out),
        "--log-file",
        str(log),
        "--timeout",
        "2",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600

    whole = gzip.decompress(out.read_bytes())
    for marker in MARKERS:
        assert marker not in whole, marker
    files = members(out)
    assert {
        "versions.json",
        "config.redacted.json",
        "checks.json",
        "checks.txt",
        "logs/agent.log",
        "manifest.json",
    } <= set(files)
    redacted = json.loads(files["config.redacted.json"])
    assert redacted["uplink"]["password_file"] == str(password_file)  # where, never what
    assert redacted["uplink"]["key_file"] == str(client.key)
    assert redacted["drivers"]["ble"][0]["devices"][0]["bindkey"] == REDACTED
    assert redacted["uplink"]["username"] == "gw-tech"
    logs = files["logs/agent.log"].decode()
    assert logs.count("[private key removed]") == 2 and "uplink.down" in logs
    checks = {c["name"]: c for c in json.loads(files["checks.json"])}
    assert checks["broker.tcp"]["status"] == "fail"
    assert checks["keys.signing"]["status"] == "ok"
    versions = json.loads(files["versions.json"])
    assert versions["packages"]["aiomqtt"] == "2.5.1"
    manifest = json.loads(files["manifest.json"])
    assert any("agent not running" in p for p in manifest["problems"])
    assert load_signing_key(key.path or Path()).key_id == key.key_id  # the key is untouched


def test_redaction_keeps_paths_and_structure_and_drops_secrets() -> None:
    raw: dict[str, Any] = {
        "uplink": {
            "password_file": "/etc/cityedge/broker.password",
            "password": "x",
            "keepalive": 30,
            "key_file": "relative/key.pem",
        },
        "keys": {
            "signing_key": "/var/lib/cityedge/keys/gateway.key",
            "trust": ["ed25519:" + "ab" * 32],
        },
        "drivers": {"lorawan": [{"devices": [{"app_skey": "00" * 16, "nwk_s_key": "11" * 16}]}]},
        "api_token": 1234,
        "note": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
    }
    out = redact(raw)
    assert out["uplink"] == {
        "password_file": "/etc/cityedge/broker.password",
        "password": REDACTED,
        "keepalive": 30,
        "key_file": REDACTED,
    }
    assert out["keys"]["signing_key"] == "/var/lib/cityedge/keys/gateway.key"
    assert out["keys"]["trust"] == raw["keys"]["trust"]  # public keys stay
    assert out["drivers"]["lorawan"][0]["devices"][0] == {
        "app_skey": REDACTED,
        "nwk_s_key": REDACTED,
    }
    assert out["api_token"] == REDACTED
    assert out["note"] == "[private key removed]"


secretish = st.sampled_from(["password", "secret", "bindkey", "app_key", "token", "Key"])
leaves = st.one_of(st.text(max_size=30), st.integers(), st.booleans(), st.none())


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.dictionaries(st.one_of(secretish, st.text(max_size=8)), leaves, max_size=4),
        lambda inner: st.dictionaries(
            st.one_of(secretish, st.text(max_size=8)),
            inner | st.lists(inner, max_size=3),
            max_size=4,
        ),
        max_leaves=20,
    )
)
def test_no_secret_named_value_survives_redaction(doc: dict[str, Any]) -> None:
    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif any(w in key.lower() for w in ("password", "secret", "key", "token")):
            kept_path = key.endswith(("_file", "_dir", "_path")) and str(node).startswith("/")
            assert node == REDACTED or kept_path
        elif isinstance(node, str):
            assert "PRIVATE KEY-----" not in node

    walk(redact(doc))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.sampled_from(["", "EC ", "RSA ", "OPENSSH "]), st.booleans())
def test_scrub_removes_every_private_key_block(text: str, kind: str, ended: bool) -> None:
    block = f"-----BEGIN {kind}PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n"
    if ended:
        block += f"-----END {kind}PRIVATE KEY-----"
    assert "PRIVATE KEY-----" not in scrub(text + block + text)


def test_the_outbox_is_exported_read_only_with_the_agent_stopped(tmp_path: Path) -> None:
    sockets = short_dir()
    try:
        create_key(tmp_path / "state" / "keys" / "gateway.key")
        with StreetThread(lampposts=2) as street:
            config = write_config(
                tmp_path,
                broker_port=free_port(),
                socket=sockets / "c.sock",  # no broker: rows stay
                modbus=[street.street.driver_tables(name="street", poll_interval=0.2)],
                pipeline={"full_report_interval": 0.001},
            )
            with TechnicianAgent(config, sockets / "c.sock") as agent:
                client = ControlClient(agent.socket)
                assert wait_until(lambda: client.call("outbox")["depth"] >= 40, timeout=30)
            assert agent.proc is not None and agent.proc.returncode == 0
    finally:
        remove(sockets)

    stats = technician("outbox", "--json", "-c", str(config))
    assert stats.returncode == 0, stats.stderr
    data = json.loads(stats.stdout)
    assert data["source"] == "file" and data["depth"] >= 40
    db = tmp_path / "state" / "outbox.db"
    before = hashlib.sha256(db.read_bytes()).hexdigest()

    out = tmp_path / "outbox.jsonl"
    done = technician("outbox", "export", str(out), "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert f"exported {data['depth']} entries" in done.stdout
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == data["depth"]
    readings = [line for line in lines if line["kind"] == "telemetry"]
    assert {r["device"] for r in readings} == {"lamppost-001", "lamppost-002"}
    assert all({"point", "value", "ts", "priority", "seq"} <= set(r) for r in readings)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # read-only, really

    to_stdout = technician("outbox", "export", "-", "-c", str(config))
    assert len(to_stdout.stdout.splitlines()) == data["depth"]
    never = out.with_name("never.jsonl")
    missing = technician("outbox", "export", str(never), "--db", str(tmp_path / "nope.db"))
    assert missing.returncode == 1 and "no such file" in missing.stderr
    assert not out.with_name("never.jsonl").exists()
