"""ABP session keys of the sensors this gateway decodes, from a key file.

    [[device]]
    name = "bin-0042"            # the device's name in readings
    type = "waste-bin"           # a device type in config/lorawan/
    dev_addr = "26011BDA"        # 8 hex digits, as printed by network servers
    nwk_skey = "<32 hex digits>"
    app_skey = "<32 hex digits>"

The file must be readable by its owner only (mode 0600) and owned by the user
the agent runs as. Keys never appear in a repr, a log line or an error.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_HEX32 = re.compile(r"^[0-9A-Fa-f]{32}$")
_ADDR = re.compile(r"^[0-9A-Fa-f]{8}$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_FILE_BYTES = 4 * 1024 * 1024


class SessionFileError(Exception):
    """What is wrong with the key file, where, and what to do."""


@dataclass(frozen=True, slots=True)
class Session:
    name: str
    device_type: str
    dev_addr: int
    nwk_skey: bytes = field(repr=False)
    app_skey: bytes = field(repr=False)

    def key_for(self, fport: int) -> bytes:
        """FPort 0 carries MAC commands, encrypted with the network key."""
        return self.nwk_skey if fport == 0 else self.app_skey

    def __str__(self) -> str:
        return f"{self.name} ({self.dev_addr:08X}, {self.device_type})"


class Keyring(Mapping[int, Session]):
    """Sessions by DevAddr."""

    def __init__(self, sessions: list[Session]) -> None:
        self._by_addr = {s.dev_addr: s for s in sessions}

    def __getitem__(self, dev_addr: int) -> Session:
        return self._by_addr[dev_addr]

    def __iter__(self) -> Iterator[int]:
        return iter(self._by_addr)

    def __len__(self) -> int:
        return len(self._by_addr)

    def __repr__(self) -> str:
        return f"Keyring({len(self)} sessions)"


def load_keyring(path: Path) -> Keyring:
    """Read and check the key file; SessionFileError names the file, the entry and the fix."""
    try:
        info = path.stat()
    except OSError as exc:
        raise SessionFileError(f"{path}: cannot read the key file: {exc.strerror}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SessionFileError(
            f"{path}: mode {stat.S_IMODE(info.st_mode):04o} lets others read session keys — "
            f"`chmod 600 {path}`"
        )
    if info.st_uid != os.geteuid():
        raise SessionFileError(
            f"{path}: owned by uid {info.st_uid}, not by the agent's user (uid {os.geteuid()}) — "
            f"`chown` it to the agent's user"
        )
    if info.st_size > MAX_FILE_BYTES:
        raise SessionFileError(f"{path}: {info.st_size} bytes is too large for a key file")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SessionFileError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SessionFileError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - {"device"})
    if unknown:
        raise SessionFileError(f"{path}: unknown key(s) {', '.join(unknown)}; expected [[device]]")
    entries = doc.get("device", [])
    if not isinstance(entries, list):
        raise SessionFileError(f"{path}: device: expected [[device]] tables")
    sessions: list[Session] = []
    names: set[str] = set()
    addrs: set[int] = set()
    for i, entry in enumerate(entries):
        where = f"{path}: device[{i}]"
        session = _session(entry, where)
        if session.name in names:
            raise SessionFileError(f"{where}.name: {session.name!r} is listed twice")
        if session.dev_addr in addrs:
            raise SessionFileError(f"{where}.dev_addr: {session.dev_addr:08X} is listed twice")
        names.add(session.name)
        addrs.add(session.dev_addr)
        sessions.append(session)
    return Keyring(sessions)


def _session(entry: Any, where: str) -> Session:
    if not isinstance(entry, dict):
        raise SessionFileError(f"{where}: expected a table")
    unknown = sorted(set(entry) - {"name", "type", "dev_addr", "nwk_skey", "app_skey"})
    if unknown:
        raise SessionFileError(f"{where}: unknown key(s) {', '.join(unknown)}")

    def text(key: str, pattern: re.Pattern[str], expected: str, secret: bool = False) -> str:
        value = entry.get(key)
        if value is None:
            raise SessionFileError(f"{where}.{key}: missing")
        if not isinstance(value, str) or not pattern.match(value):
            shown = "" if secret else f", got {value!r}"
            raise SessionFileError(f"{where}.{key}: expected {expected}{shown}")
        return value

    return Session(
        name=text("name", _NAME, "a name of letters, digits, '.', '_' or '-'"),
        device_type=text("type", _NAME, "a device type name (config/lorawan/<type>.toml)"),
        dev_addr=int(text("dev_addr", _ADDR, "8 hex digits, like 26011BDA"), 16),
        nwk_skey=bytes.fromhex(text("nwk_skey", _HEX32, "32 hex digits", secret=True)),
        app_skey=bytes.fromhex(text("app_skey", _HEX32, "32 hex digits", secret=True)),
    )
