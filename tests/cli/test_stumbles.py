"""Each stumble a technician met with the CLI, through the real `cityedge` as a subprocess:
at 80 columns on a terminal (a pty) and piped."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cityedge.protocol.key_files import create_key, load_signing_key
from cityedge.sdk import __version__
from tests.cli.conftest import on_terminal, piped
from tests.support.agent_process import to_toml
from tests.support.demo import demo_config
from tests.technician.conftest import Site
from tests.technician.site import wait_until

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LAMPS = ["lamppost-001", "lamppost-002", "lamppost-003"]


def screen(text: str) -> str:
    return ANSI.sub("", text).replace("\r", "")


def test_version_and_shell_completion() -> None:
    version = piped("--version")
    assert version.returncode == 0 and version.stdout == f"cityedge {__version__}\n"
    script = piped("--show-completion", "bash")
    assert script.returncode == 0, script.stderr
    assert "complete -o default -F _cityedge_completion cityedge" in script.stdout
    assert "_CITYEDGE_COMPLETE=complete_bash" in script.stdout
    # what bash asks when a technician types `cityedge dev<TAB>`
    asked = piped(env={"_CITYEDGE_COMPLETE": "complete_bash", "COMP_WORDS": "cityedge dev",
                       "COMP_CWORD": "1"})  # fmt: skip
    assert asked.stdout.split() == ["devices"], asked.stdout + asked.stderr
    assert "--install-completion" in piped("--help").stdout


def test_usage_mistakes_are_one_line_and_exit_2(tmp_path: Path) -> None:
    demo = str(demo_config(tmp_path))  # were it not refused, never the fixed-port demo
    for args, says in (
        (["devices", "--bogus"], "cityedge devices: No such option: --bogus"),
        (["read"], "cityedge read: Missing argument 'device'"),
        (["demo", "-c", demo, "--duration", "-5"], "cityedge demo: Invalid value for '--duration'"),
        (["frobnicate"], "cityedge: No such command 'frobnicate'"),
        (["check", "--only", "wifi"], "unknown check group(s) wifi"),
        (["run", "--bogus"], "cityedge run: unrecognized arguments: --bogus"),  # the lean path
    ):
        done = piped(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert says in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1, done.stderr  # one line, no box
        assert "╭" not in done.stderr and "Traceback" not in done.stderr
        assert done.stdout == ""


def test_devices_piped_show_full_distinct_names_and_agree_with_read(site: Site) -> None:
    assert wait_until(lambda: "up" in piped("devices", "-c", str(site.config)).stdout, 30)
    done = piped("devices", "-c", str(site.config))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "# 3 devices"
    assert lines[1].split("\t")[:4] == ["device", "type", "driver", "state"]
    names = [line.split("\t")[0] for line in lines[2:]]
    assert names == LAMPS  # full and distinct, none cut to `lamppost-…`
    as_json = json.loads(piped("devices", "--json", "-c", str(site.config)).stdout)
    readable = [d["device"] for d in as_json if d["type"]]
    assert readable == names
    for name in names:  # every device `devices` lists, `read` knows
        read = piped("read", name, "dimming", "--json", "-c", str(site.config))
        assert read.returncode == 0, read.stderr


def test_devices_on_an_80_column_terminal_wrap_instead_of_cutting(site: Site) -> None:
    code, shown = on_terminal("devices", "-c", str(site.config), columns=80)
    text = screen(shown)
    assert code == 0, text
    assert "…" not in text
    for name in LAMPS:
        assert name in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_booleans_read_on_or_off_everywhere(site: Site) -> None:
    read = piped("read", "lamppost-003", "lamp_on", "-c", str(site.config))
    assert read.returncode == 0, read.stderr
    assert read.stdout.splitlines()[2].split("\t")[1] in ("on", "off"), read.stdout
    wrote = piped("write", "lamppost-003", "lamp_on", "off", "--for", "10m", "-c", str(site.config))
    assert wrote.returncode == 0, wrote.stderr
    try:
        assert "lamp_on = off" in wrote.stdout
        status = piped("status", "-c", str(site.config))
        assert "lamppost-003.lamp_on\toff\t" in status.stdout, status.stdout
        assert "True" not in status.stdout and "False" not in status.stdout
    finally:
        ended = piped("write", "lamppost-003", "lamp_on", "--end", "-c", str(site.config))
        assert ended.returncode == 0, ended.stderr


def test_an_empty_outbox_reads_empty(tmp_path: Path) -> None:
    from cityedge.gateway.outbox import Outbox
    from cityedge.protocol.sealing import message_sealer

    key = create_key(tmp_path / "state" / "keys" / "gateway.key")
    box = Outbox.open(
        tmp_path / "state" / "outbox.db", seal=message_sealer(key, gateway="gw", site="s"),
        max_bytes=1 << 20, max_age=3600,
    )  # fmt: skip
    box.close()
    config = tmp_path / "agent.toml"
    config.write_text(to_toml({
        "gateway": {"id": "gw", "site": "s", "state_dir": str(tmp_path / "state")},
        "control": {"socket": str(tmp_path / "none.sock")},
    }))  # fmt: skip
    done = piped("outbox", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert "waiting  empty" in done.stdout, done.stdout
    assert "rows" not in done.stdout


def test_check_says_first_whether_the_agent_runs(site: Site, tmp_path: Path) -> None:
    running = piped("check", "--only", "agent", "-c", str(site.config))
    assert running.returncode == 0, running.stdout + running.stderr
    first = running.stdout.splitlines()[0]
    assert first.startswith("✔ agent  running:") and f"cityedge {__version__}" in first
    assert re.search(r"pid \d+", first), first

    stopped = tmp_path / "agent.toml"
    stopped.write_text(to_toml({
        "gateway": {"id": "gw", "site": "s", "state_dir": str(tmp_path / "state")},
        "control": {"socket": str(tmp_path / "none.sock")},
    }))  # fmt: skip
    done = piped("check", "--skip", "broker", "--skip", "clock", "-c", str(stopped))
    first = done.stdout.splitlines()[0]
    assert first.startswith("⚠ agent  not running: nothing answers on"), done.stdout
    assert "systemctl status cityedge" in done.stdout


def test_check_and_rotate_find_the_key_where_the_unit_keeps_it(tmp_path: Path) -> None:
    credential = tmp_path / "etc" / "credentials" / "gateway.key"
    key = create_key(credential)
    config = tmp_path / "agent.toml"
    config.write_text(to_toml({
        "gateway": {"id": "gw-7", "site": "s", "state_dir": str(tmp_path / "state")},
        "control": {"socket": str(tmp_path / "none.sock")},
    }))  # fmt: skip
    env = {"CITYEDGE_CREDENTIAL": str(credential)}
    done = piped("check", "--only", "keys", "-c", str(config), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{credential} (the unit's credential): key id {key.key_id}" in done.stdout
    assert "keys init" not in done.stdout  # no advice to make a second key
    rotated = piped("keys", "rotate", "-c", str(config), env=env)
    assert rotated.returncode == 0, rotated.stderr
    assert f"rotated gateway key {credential}" in rotated.stdout
    assert load_signing_key(credential).key_id != key.key_id
    assert not (tmp_path / "state" / "keys" / "gateway.key").exists()  # no second key

    nowhere = piped("check", "--only", "keys", "-c", str(config),
                    env={"CITYEDGE_CREDENTIAL": str(tmp_path / "none.key")})  # fmt: skip
    assert nowhere.returncode == 1
    assert "restore the enrolled key from its backup" in nowhere.stdout


def test_check_remedies_stay_whole_on_an_80_column_terminal(tmp_path: Path) -> None:
    deep = tmp_path / "a-rather-long-directory-name" / "for-the-gateway-state" / "keys"
    config = tmp_path / "agent.toml"
    config.write_text(to_toml({
        "gateway": {"id": "gw", "site": "s", "state_dir": str(tmp_path / "state")},
        "keys": {"signing_key": str(deep / "gateway.key")},
        "control": {"socket": str(tmp_path / "none.sock")},
    }))  # fmt: skip
    code, shown = on_terminal("check", "--only", "keys", "-c", str(config), columns=80)
    text = screen(shown)
    assert code == 1, text
    remedy = next(line for line in text.splitlines() if "→" in line)
    assert str(deep / "gateway.key") in remedy  # one logical line: the path copies whole
    assert "…" not in text


def test_keys_show_speaks_json_too(tmp_path: Path) -> None:
    key = create_key(tmp_path / "gateway.key")
    done = piped("keys", "show", str(tmp_path / "gateway.key"), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "file": str(tmp_path / "gateway.key"), "key_id": key.key_id, "public": key.public_text(),
    }  # fmt: skip
