"""Keys of the sensors this gateway decodes, from a key file.

    [[device]]                   # activated by personalisation (ABP)
    name = "bin-0042"            # the device's name in readings
    type = "waste-bin"           # a device type in config/lorawan/
    dev_addr = "26011BDA"        # 8 hex digits, as printed by network servers
    nwk_skey = "<32 hex digits>"
    app_skey = "<32 hex digits>"

    [[device]]                   # activated over the air (OTAA): joins through us
    name = "bin-0099"
    type = "waste-bin"
    dev_eui = "70B3D57ED0000099" # 16 hex digits, as printed on the sensor
    join_eui = "70B3D57ED0000000" # the AppEUI of LoRaWAN 1.0.x
    app_key = "<32 hex digits>"

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
_EUI = re.compile(r"^[0-9A-Fa-f]{16}$")
ABP_KEYS = frozenset({"name", "type", "dev_addr", "nwk_skey", "app_skey"})
OTAA_KEYS = frozenset({"name", "type", "dev_eui", "join_eui", "app_key"})
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


@dataclass(frozen=True, slots=True)
class OtaaDevice:
    """A device that joins: its root key opens sessions (drivers/lorawan/joins.py)."""

    name: str
    device_type: str
    dev_eui: str  # 16 hex digits, upper case
    join_eui: str
    app_key: bytes = field(repr=False)

    def __str__(self) -> str:
        return f"{self.name} (DevEUI {self.dev_eui}, {self.device_type})"


class Keyring(Mapping[int, Session]):
    """ABP sessions by DevAddr, and the OTAA devices allowed to join, by DevEUI."""

    def __init__(self, sessions: list[Session], otaa: list[OtaaDevice] | None = None) -> None:
        self._by_addr = {s.dev_addr: s for s in sessions}
        self.otaa = {d.dev_eui: d for d in otaa or []}

    def __getitem__(self, dev_addr: int) -> Session:
        return self._by_addr[dev_addr]

    def __iter__(self) -> Iterator[int]:
        return iter(self._by_addr)

    def __len__(self) -> int:
        return len(self._by_addr)

    def __repr__(self) -> str:
        return f"Keyring({len(self)} sessions, {len(self.otaa)} OTAA devices)"


def key_file_entry(device: Session | OtaaDevice) -> str:
    """One [[device]] table of a key file, as `load_keyring` reads it (demo, tests)."""
    lines = ["[[device]]", f'name = "{device.name}"', f'type = "{device.device_type}"']
    if isinstance(device, OtaaDevice):
        lines += [f'dev_eui = "{device.dev_eui}"', f'join_eui = "{device.join_eui}"',
                  f'app_key = "{device.app_key.hex()}"']  # fmt: skip
    else:
        lines += [f'dev_addr = "{device.dev_addr:08X}"', f'nwk_skey = "{device.nwk_skey.hex()}"',
                  f'app_skey = "{device.app_skey.hex()}"']  # fmt: skip
    return "\n".join(lines) + "\n"


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
    otaa: list[OtaaDevice] = []
    names: set[str] = set()
    addrs: set[int] = set()
    euis: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"{path}: device[{i}]"
        device = _device(entry, where)
        if device.name in names:
            raise SessionFileError(f"{where}.name: {device.name!r} is listed twice")
        names.add(device.name)
        if isinstance(device, OtaaDevice):
            if device.dev_eui in euis:
                raise SessionFileError(f"{where}.dev_eui: {device.dev_eui} is listed twice")
            euis.add(device.dev_eui)
            otaa.append(device)
            continue
        if device.dev_addr in addrs:
            raise SessionFileError(f"{where}.dev_addr: {device.dev_addr:08X} is listed twice")
        addrs.add(device.dev_addr)
        sessions.append(device)
    return Keyring(sessions, otaa)


def _device(entry: Any, where: str) -> Session | OtaaDevice:
    if not isinstance(entry, dict):
        raise SessionFileError(f"{where}: expected a table")
    otaa = bool({"dev_eui", "join_eui", "app_key"} & set(entry))
    allowed = OTAA_KEYS if otaa else ABP_KEYS
    unknown = sorted(set(entry) - allowed)
    if unknown:
        hint = ""
        if otaa and set(unknown) & ABP_KEYS:
            hint = (
                " (an entry is either ABP: dev_addr, nwk_skey, app_skey;"
                " or OTAA: dev_eui, join_eui, app_key)"
            )
        raise SessionFileError(f"{where}: unknown key(s) {', '.join(unknown)}{hint}")

    def text(key: str, pattern: re.Pattern[str], expected: str, secret: bool = False) -> str:
        value = entry.get(key)
        if value is None:
            raise SessionFileError(f"{where}.{key}: missing")
        if not isinstance(value, str) or not pattern.match(value):
            shown = "" if secret else f", got {value!r}"
            raise SessionFileError(f"{where}.{key}: expected {expected}{shown}")
        return value

    name = text("name", _NAME, "a name of letters, digits, '.', '_' or '-'")
    device_type = text("type", _NAME, "a device type name (config/lorawan/<type>.toml)")
    if otaa:
        return OtaaDevice(
            name=name,
            device_type=device_type,
            dev_eui=text("dev_eui", _EUI, "16 hex digits, like 70B3D57ED0000099").upper(),
            join_eui=text("join_eui", _EUI, "16 hex digits, like 70B3D57ED0000000").upper(),
            app_key=bytes.fromhex(text("app_key", _HEX32, "32 hex digits", secret=True)),
        )
    return Session(
        name=name,
        device_type=device_type,
        dev_addr=int(text("dev_addr", _ADDR, "8 hex digits, like 26011BDA"), 16),
        nwk_skey=bytes.fromhex(text("nwk_skey", _HEX32, "32 hex digits", secret=True)),
        app_skey=bytes.fromhex(text("app_skey", _HEX32, "32 hex digits", secret=True)),
    )
