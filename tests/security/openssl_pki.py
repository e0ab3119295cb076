"""A throw-away city PKI made with the `openssl` command (the Debian package that
scripts/setup.sh installs): a CA, the broker's server certificate and one client
certificate per name, and the shipped Mosquitto config pointed at them."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONF = ROOT / "config" / "mosquitto" / "cityedge.conf"
SHIPPED_ACL = ROOT / "config" / "mosquitto" / "acl"
EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args: str | Path, cwd: Path) -> None:
    done = subprocess.run(["openssl", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=30, check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))}: {done.stderr.strip()}")


@dataclass
class Pki:
    directory: Path
    clients: dict[str, tuple[Path, Path]] = field(default_factory=dict)  # name -> (cert, key)

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"


def _issue(pki: Pki, name: str, extensions: str) -> None:
    d = pki.directory
    _openssl("req", *EC, "-keyout", pki.key(name), "-out", d / f"{name}.csr",
             "-subj", f"/CN={name}", cwd=d)  # fmt: skip
    (d / f"{name}.ext").write_text(extensions)
    _openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", pki.ca, "-CAkey", d / "ca.key",
             "-CAcreateserial", "-days", "2", "-out", pki.cert(name),
             "-extfile", d / f"{name}.ext", cwd=d)  # fmt: skip
    pki.key(name).chmod(0o600)


def make_pki(directory: Path, clients: tuple[str, ...]) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory)
    _openssl("req", "-x509", *EC, "-keyout", directory / "ca.key", "-out", pki.ca, "-days", "2",
             "-subj", "/CN=test city CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)  # fmt: skip
    _issue(pki, "broker", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                          "extendedKeyUsage=serverAuth\n")  # fmt: skip
    for name in clients:
        _issue(pki, name, "extendedKeyUsage=clientAuth\n")
        pki.clients[name] = (pki.cert(name), pki.key(name))
    return pki


def shipped_listener(port: int, pki: Pki) -> str:
    """config/mosquitto/cityedge.conf as shipped, only moved to a free loopback port and
    this PKI (the lines `Broker` writes itself, persistence and queues, left to it)."""
    paths = {"cafile": pki.ca, "certfile": pki.cert("broker"), "keyfile": pki.key("broker"),
             "acl_file": SHIPPED_ACL}  # fmt: skip
    lines = []
    for line in SHIPPED_CONF.read_text().splitlines():
        word = line.split(" ", 1)[0]
        if word == "listener":
            line = f"listener {port} 127.0.0.1"
        elif word in paths:
            line = f"{word} {paths[word]}"
        elif word in ("persistence", "max_queued_messages"):
            continue
        lines.append(line)
    text = "\n".join(lines)
    assert re.search(r"^listener \d+ 127\.0\.0\.1$", text, re.M), text
    return text
