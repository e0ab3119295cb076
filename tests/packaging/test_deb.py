"""The Debian package, built by scripts/build-deb.sh and installed with `dpkg -i`
into a Debian 12 root made here with debootstrap: the agent runs there
(`config check`, `check`, `keys init`), the maintainer scripts make the user,
the directories and the venv with systemd's tools and without them, and a
purge leaves no venv behind.

The root is made once and cached under `.cache/debootstrap/<key>` (git-ignored),
keyed by `RECIPE` and build-deb.sh's recipe number; each test works on a copy.
The first run downloads about 60 MB of Debian packages (a minute or two);
`CITYEDGE_DEBIAN_MIRROR` names another mirror. debootstrap and chroot need root.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.packaging.conftest import ROOT, SOURCES

pytestmark = [
    pytest.mark.timeout(1500),
    pytest.mark.skipif(os.geteuid() != 0, reason="debootstrap and chroot need root"),
]

SUITE = "bookworm"  # Debian 12: Python 3.11, as the package's wheels
MIRROR = os.environ.get("CITYEDGE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# A gateway's base: the package's dependencies and systemd (sysusers, tmpfiles).
RECIPE = f"debootstrap --variant=minbase --include=python3,python3-venv,systemd {SUITE}"
CACHE = ROOT / ".cache" / "debootstrap"
CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "COLUMNS": "200",
}
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
NEXT = f"{VERSION}.post1"
SYSTEMD_TOOLS = ("usr/bin/systemd-sysusers", "usr/bin/systemd-tmpfiles", "usr/bin/systemctl")


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def recipe_key() -> str:
    done = run([str(ROOT / "scripts" / "build-deb.sh"), "--recipe"])
    assert done.returncode == 0, done.stderr
    return hashlib.sha256(f"{RECIPE} {MIRROR} {done.stdout.strip()}".encode()).hexdigest()[:16]


def cached_root() -> Path:
    """The debootstrapped root for this recipe, made on first use (one maker at a time)."""
    key = recipe_key()
    final = CACHE / key
    if (final / ".complete").exists():
        return final
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    assert Path(debootstrap).exists(), (
        "debootstrap is not installed: `apt-get install debootstrap` "
        "(scripts/test.sh installs it through CITYEDGE_EXTRA_APT)"
    )
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / ".complete").exists():
            return final
        partial = CACHE / f"{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        args = RECIPE.split()[1:-1]
        made = run([debootstrap, *args, SUITE, str(partial), MIRROR], timeout=1200)
        assert made.returncode == 0, f"debootstrap failed:\n{made.stdout[-3000:]}{made.stderr}"
        (partial / ".complete").touch()
        partial.rename(final)
        for stale in CACHE.iterdir():  # roots of older recipes
            if stale.is_dir() and stale != final and not stale.name.endswith(".partial"):
                shutil.rmtree(stale, ignore_errors=True)
    return final


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deb")
    built = run([str(ROOT / "scripts" / "build-deb.sh"), "--out", str(out)], timeout=900)
    assert built.returncode == 0, f"build-deb.sh failed:\n{built.stdout}\n{built.stderr}"
    path = Path(built.stdout.strip().splitlines()[-1])
    assert path.is_file() and path.parent == out, built.stdout
    return path


@pytest.fixture(scope="session")
def next_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same package as the next version (0.1.0 -> 0.1.0.post1), from a copy of the tree."""
    tree = tmp_path_factory.mktemp("next") / "tree"
    for name in (*SOURCES, "systemd", "docs", "scripts"):
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            tree.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, tree / name)
    pyproject = tree / "pyproject.toml"
    text = pyproject.read_text()
    assert text.count(f'version = "{VERSION}"') == 1
    pyproject.write_text(text.replace(f'version = "{VERSION}"', f'version = "{NEXT}"'))
    built = run([str(tree / "scripts" / "build-deb.sh"), "--out", str(tree / "dist")], timeout=900)
    assert built.returncode == 0, f"build-deb.sh failed:\n{built.stdout}\n{built.stderr}"
    return Path(built.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def base_root() -> Path:
    return cached_root()


@pytest.fixture
def debian(base_root: Path, tmp_path: Path) -> Iterator[Path]:
    """A throwaway copy of the cached root (cp -a keeps owners, modes and devices)."""
    root = tmp_path / "root"
    copied = run(["cp", "-a", str(base_root), str(root)], timeout=600)
    assert copied.returncode == 0, copied.stderr
    yield root
    shutil.rmtree(root, ignore_errors=True)


def chroot(root: Path, *cmd: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["chroot", str(root), *cmd],
        capture_output=True, text=True, timeout=timeout, env=CHROOT_ENV,
    )  # fmt: skip


def install(root: Path, deb: Path) -> subprocess.CompletedProcess[str]:
    shutil.copy2(deb, root / "tmp" / deb.name)
    return chroot(root, "dpkg", "-i", f"/tmp/{deb.name}", timeout=600)


def installed_version(root: Path) -> str:
    done = chroot(root, "/opt/cityedge/venv/bin/python", "-c",
                  "import importlib.metadata as m; print(m.version('cityedge'))")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_root_is_the_debian_the_package_targets(base_root: Path) -> None:
    python = chroot(base_root, "python3", "--version")
    assert python.returncode == 0 and python.stdout.startswith("Python 3.11."), python


def test_dpkg_installs_it_and_the_agent_runs_in_the_debian_root(debian: Path, deb: Path) -> None:
    installed = install(debian, deb)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    helped = chroot(debian, "cityedge", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "run" in helped.stdout

    checked = chroot(debian, "cityedge", "config", "check", "/etc/cityedge/agent.toml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok" in checked.stdout

    # On-device diagnostics of the example config in a root with no key, no devices
    # and no broker: a report naming what is missing, and a failing exit status.
    diagnosed = chroot(debian, "cityedge", "check", "-c", "/etc/cityedge/agent.toml")
    report = diagnosed.stdout + diagnosed.stderr
    assert diagnosed.returncode == 1, report  # a problem found (docs/cli.md)
    assert "Traceback" not in report, report
    assert "✔ config" in report, report
    assert any(line.lstrip().startswith("✘ keys.signing") for line in report.splitlines()), report

    # The key where the unit's LoadCredential= takes it from.
    keyed = chroot(
        debian, "cityedge", "keys", "init", "--out", "/etc/cityedge/credentials/gateway.key"
    )
    assert keyed.returncode == 0, keyed.stdout + keyed.stderr
    key = debian / "etc" / "cityedge" / "credentials" / "gateway.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    shown = chroot(debian, "cityedge", "keys", "show", "/etc/cityedge/credentials/gateway.key")
    assert shown.returncode == 0 and "ed25519:" in shown.stdout, shown

    # What postinst and the package put in place.
    user = chroot(debian, "getent", "passwd", "cityedge")
    assert user.returncode == 0 and "/var/lib/cityedge" in user.stdout, user
    groups = chroot(debian, "id", "-nG", "cityedge")
    assert {"dialout", "bluetooth"} <= set(groups.stdout.split()), groups  # the unit's groups
    credentials = debian / "etc" / "cityedge" / "credentials"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o700
    config = debian / "etc" / "cityedge" / "agent.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert config.stat().st_gid == int(chroot(debian, "id", "-g", "cityedge").stdout)
    conffiles = chroot(debian, "dpkg-query", "-W", "-f=${Conffiles}", "cityedge")
    assert "/etc/cityedge/agent.toml" in conffiles.stdout, conffiles
    unit = (debian / "usr/lib/systemd/system/cityedge.service").read_text()
    assert "ExecStart=/usr/bin/cityedge run" in unit
    # systemd's own check, in the root: it fails when ExecStart's command is missing.
    verified = chroot(
        debian, "systemd-analyze", "verify", "/usr/lib/systemd/system/cityedge.service"
    )
    assert verified.returncode == 0 and "cityedge.service" not in verified.stderr, verified
    assert (debian / "usr/bin/cityedge").readlink() == Path("/opt/cityedge/venv/bin/cityedge")
    venv = debian / "opt" / "cityedge" / "venv"
    assert venv.readlink() == Path(f"venv-{VERSION}")
    # The venv is the root's own python3, not this machine's.
    assert (venv / "pyvenv.cfg").read_text().count("home = /usr/bin") == 1

    # Installing it again (an upgrade's path through postinst) keeps a working agent.
    again = install(debian, deb)
    assert again.returncode == 0, again.stdout + again.stderr
    assert chroot(debian, "cityedge", "config", "check", "/etc/cityedge/agent.toml").returncode == 0

    purged = chroot(debian, "dpkg", "--purge", "cityedge")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert not (debian / "opt" / "cityedge").exists()
    assert not (debian / "usr" / "bin" / "cityedge").is_symlink()
    assert not config.exists()
    assert key.exists(), "purge must not delete the gateway key (docs/operations.md)"


def test_the_maintainer_scripts_work_without_systemd(debian: Path, deb: Path) -> None:
    """A root without systemd's tools (a container, another init): plain useradd and install."""
    for tool in SYSTEMD_TOOLS:
        (debian / tool).rename(debian / f"{tool}.hidden")
    installed = install(debian, deb)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    user = chroot(debian, "getent", "passwd", "cityedge")
    assert user.returncode == 0 and "/usr/sbin/nologin" in user.stdout, user
    groups = chroot(debian, "id", "-nG", "cityedge")
    assert {"dialout", "bluetooth"} <= set(groups.stdout.split()), groups
    credentials = debian / "etc" / "cityedge" / "credentials"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o700
    checked = chroot(debian, "cityedge", "config", "check", "/etc/cityedge/agent.toml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    removed = chroot(debian, "dpkg", "--remove", "cityedge")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not (debian / "opt" / "cityedge").exists()


def test_an_upgrade_swaps_the_venv_keeps_the_config_and_a_rollback_goes_back(
    debian: Path, deb: Path, next_deb: Path
) -> None:
    assert install(debian, deb).returncode == 0
    config = debian / "etc" / "cityedge" / "agent.toml"
    edited = config.read_text().replace('id = "gw-town03-0042"', 'id = "gw-town03-0099"')
    config.write_text(edited)

    upgraded = install(debian, next_deb)
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert installed_version(debian) == NEXT
    opt = debian / "opt" / "cityedge"
    assert sorted(p.name for p in opt.glob("venv-*")) == [f"venv-{NEXT}"]  # the old one went
    assert config.read_text() == edited  # a conffile: the site's edit stays
    checked = chroot(debian, "cityedge", "config", "check", "/etc/cityedge/agent.toml")
    assert checked.returncode == 0 and "gw-town03-0099" in checked.stdout, checked

    rolled_back = install(debian, deb)
    assert rolled_back.returncode == 0, rolled_back.stdout + rolled_back.stderr
    assert installed_version(debian) == VERSION
    assert sorted(p.name for p in opt.glob("venv-*")) == [f"venv-{VERSION}"]
    assert config.read_text() == edited
