"""`cityedge keys init|show` as a technician runs them."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from cityedge.protocol.key_files import load_signing_key
from tests.protocol.street import ROOT, cli


def run(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if home is not None:
        env["XDG_CONFIG_HOME"] = str(home)
    return subprocess.run(
        cli("keys", *args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def field(output: str, name: str) -> str:
    return next(
        line.split(":", 1)[1].strip() for line in output.splitlines() if line.startswith(f"{name}:")
    )


def test_init_show_and_refuse(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "gateway.key"
    made = run("init", "--out", str(path))
    assert made.returncode == 0, made.stderr
    kid, public = field(made.stdout, "key id"), field(made.stdout, "public key")
    assert load_signing_key(path).key_id == kid
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"--trust <gateway-id>={public}" in made.stdout
    shown = run("show", str(path))
    assert shown.returncode == 0 and field(shown.stdout, "key id") == kid
    assert "PRIVATE" not in shown.stdout + made.stdout
    again = run("init", "--out", str(path))
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr
    path.chmod(0o644)
    loose = run("show", str(path))
    assert loose.returncode == 2
    assert "mode 0644" in loose.stderr and f"chmod 600 {path}" in loose.stderr
    assert "Traceback" not in loose.stderr
    replaced = run("init", "--out", str(path), "--force")
    assert replaced.returncode == 0 and field(replaced.stdout, "key id") != kid
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_central_key_goes_to_the_user_config_and_public_keys_show(tmp_path: Path) -> None:
    made = run("init", "--central", home=tmp_path)
    assert made.returncode == 0, made.stderr
    path = tmp_path / "cityedge" / "command-post.key"
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "trust = [" in made.stdout
    kid = field(made.stdout, "key id")
    assert field(run("show", "--central", home=tmp_path).stdout, "key id") == kid
    public = field(made.stdout, "public key")
    by_text = run("show", public)
    assert by_text.returncode == 0 and field(by_text.stdout, "key id") == kid
    pub_file = tmp_path / "cp.pub"
    pub_file.write_text(public + "\n")
    pub_file.chmod(0o644)  # public keys may be world-readable
    assert field(run("show", str(pub_file)).stdout, "key id") == kid


def test_show_explains_a_missing_key(tmp_path: Path) -> None:
    shown = run("show", str(tmp_path / "none.key"))
    assert shown.returncode == 2
    assert "no such key file" in shown.stderr and "cityedge keys init" in shown.stderr
