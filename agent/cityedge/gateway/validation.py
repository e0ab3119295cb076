"""The one validation of a config file, shared by `cityedge run` and `cityedge config check`.

`config.load_config` checks each table against its schema; this adds what only
the whole file shows: names that must meet (a lighting group's devices, a
policy's points), files and directories the agent will need (trust keys, the
control socket's directory), the maintenance page's address, and the secret
files' modes. Errors stop `run` and fail `config check`; warnings (risky but
legal choices) are printed by both and logged by `run`.

Each message names its key path and the reason, like the schema's own:
`lighting.groups[0].devices: 'lampost-002' is no device of this config`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cityedge.gateway.config import AgentConfig, ConfigError, LoadedConfig, load_config
from cityedge.sdk.addresses import AddressProblem, parse_address

MAINTENANCE_KEY = "control.maintenance_address"
# systemd creates the unit's RuntimeDirectory= at each start: missing while stopped is normal.
SYSTEMD_RUNTIME_DIRS = frozenset({Path("/run/cityedge")})


@dataclass(frozen=True)
class Validated:
    """A config that `run` accepts, and the risky choices it makes."""

    loaded: LoadedConfig
    warnings: list[str] = field(default_factory=list)

    @property
    def config(self) -> AgentConfig:
        return self.loaded.config

    def render_warnings(self) -> str:
        return "\n".join(f"{self.loaded.path}: warning: {w}" for w in self.warnings)


def validate_file(path: Path | str) -> Validated:
    """Load and check a config as `run` needs it; ConfigError lists every error."""
    from cityedge.gateway.config import check_secret_files

    loaded = load_config(path)
    source = str(loaded.path)
    errors: list[str] = []
    warnings: list[str] = []
    cfg = loaded.config
    _maintenance(cfg, errors, warnings)
    _socket(cfg, errors)
    _trust(cfg, errors)
    catalogue = _declared(cfg)
    _lighting(cfg, catalogue, errors, warnings)
    _policy(cfg, catalogue, errors, warnings)
    try:
        check_secret_files(cfg, source)
    except ConfigError as err:
        errors += err.problems
    if errors:
        raise ConfigError(source, errors)
    return Validated(loaded, warnings)


@dataclass
class _Catalogue:
    """The devices the file itself declares, with their types' points where a profile
    says them; `open_sections` name tables whose devices live elsewhere (LoRaWAN)."""

    devices: dict[str, str | None] = field(default_factory=dict)  # name -> type
    points: dict[str, set[str]] = field(default_factory=dict)  # type -> point names
    open_sections: list[str] = field(default_factory=list)


def _declared(cfg: AgentConfig) -> _Catalogue:
    out = _Catalogue()
    for kind, section in cfg.driver_sections():
        listed = getattr(section, "devices", None)
        if listed is None:
            out.open_sections.append(f"drivers.{kind} {section.name!r}")
            continue
        for device in listed if isinstance(listed, list) else []:
            profile: Any = getattr(device, "profile", None)
            dtype = getattr(profile, "type", None)
            out.devices[device.name] = dtype if isinstance(dtype, str) else None
            if isinstance(dtype, str):
                out.points.setdefault(dtype, set()).update(getattr(profile, "points", {}))
        for name in section.device_names():  # a table naming one `device` (NMEA)
            out.devices.setdefault(name, None)
    return out


def _maintenance(cfg: AgentConfig, errors: list[str], warnings: list[str]) -> None:
    text = cfg.control.maintenance_address
    if not text:
        return
    try:
        host, port = parse_address(text)
    except AddressProblem as exc:
        errors.append(f"{MAINTENANCE_KEY}: {exc}")
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        warnings.append(
            f"{MAINTENANCE_KEY}: {host}:{port} serves the page, without a password, to "
            "every network this gateway is on; use 127.0.0.1 and an SSH tunnel, or a "
            "service port only the crew can reach"
        )


def _socket(cfg: AgentConfig, errors: list[str]) -> None:
    if cfg.control.socket is None:
        return  # <state_dir>/control.sock: the state dir is the agent's own
    folder = cfg.control.socket.parent
    if folder in SYSTEMD_RUNTIME_DIRS or folder.is_dir():
        return
    what = "is not a directory" if folder.exists() else "does not exist"
    errors.append(
        f"control.socket: {folder} {what}; create it for the agent's user "
        f"(`install -d -o cityedge -g cityedge -m 0750 {folder}`) or put the socket elsewhere"
    )


def _trust(cfg: AgentConfig, errors: list[str]) -> None:
    from cityedge.protocol.key_files import load_public_key
    from cityedge.protocol.keys import KeyFileError

    for i, source in enumerate(cfg.keys.trust):
        try:
            load_public_key(source)
        except KeyFileError as err:
            errors.append(f"keys.trust[{i}]: {err}")


def _lighting(
    cfg: AgentConfig, catalogue: _Catalogue, errors: list[str], warnings: list[str]
) -> None:
    if cfg.lighting is None:
        return
    for i, group in enumerate(cfg.lighting.groups):
        for name in group.devices:
            if name in catalogue.devices:
                continue
            where = f"lighting.groups[{i}].devices"
            if catalogue.open_sections:
                warnings.append(
                    f"{where}: {name!r} is not declared in this file; it must come from "
                    f"{', '.join(catalogue.open_sections)}"
                )
            else:
                errors.append(
                    f"{where}: {name!r} is no device of this config{_near(name, catalogue.devices)}"
                )


def _policy(
    cfg: AgentConfig, catalogue: _Catalogue, errors: list[str], warnings: list[str]
) -> None:
    for dtype, rules in cfg.policy.root.items():
        known = catalogue.points.get(dtype)
        if known is None:
            if not catalogue.open_sections and dtype not in catalogue.devices.values():
                warnings.append(f"policy.{dtype}: no device of type {dtype!r} in this config")
            continue
        for point in rules.writes:
            if point not in known:
                errors.append(
                    f"policy.{dtype}.writes.{point}: device type {dtype!r} has no point "
                    f"{point!r}{_near(point, known)}"
                )


def _near(name: str, known: Any) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
