"""One TOML file, validated once into typed models.

Every error names its key path and the value found, e.g.
`drivers.modbus[0].devices[2].port: expected 1-65535, got 0`, so a technician can
fix a file without reading code. Driver sections are validated by the model
their driver package declares (see `cityedge.sdk.driver`).
"""

from __future__ import annotations

import hashlib
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from cityedge.gateway.lighting.program import Lighting, load_lighting
from cityedge.gateway.policy import Policy, load_policy
from cityedge.gateway.registry import known_kinds, section_model
from cityedge.gateway.talq.section import TalqSection
from cityedge.protocol.topics import DEFAULT_PREFIX, NAME_PATTERN, NAME_RULE
from cityedge.sdk.driver import SHIPPED_CONFIG_DIR, DriverEnv, DriverSection
from cityedge.sdk.problems import FileProblems, describe_value, error_lines
from cityedge.sdk.tables import Field, Invalid, Table, check, check_table

Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0, le=86400 * 366)]


class GatewaySection(Table):
    id: str = Field(min_length=1, max_length=64)
    site: str = Field(min_length=1, max_length=64)
    state_dir: Path = Path("/var/lib/cityedge")
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    timezone: str = "UTC"
    # Site folders of device profiles, searched before the shipped ones (ASCII under <dir>/ascii/)
    profile_dirs: list[Path] = Field(default_factory=list)

    @check_table
    def _profile_dirs_exist(self) -> None:
        missing = [str(d) for d in self.profile_dirs if not d.is_dir()]
        if missing:
            raise ValueError(f"profile_dirs: not a folder: {', '.join(missing)}")

    @check("id", "site")
    def _topic_safe(cls, value: str) -> str:
        # Both become topic levels; RabbitMQ and NATS map '/' to '.', so a '.' in a
        # level would split it there (docs/protocol.md, "Topics").
        if NAME_PATTERN.match(value) is None:
            raise ValueError(
                f"{value!r}: use only {NAME_RULE} — a topic level must survive every broker's "
                "topic mapping (RabbitMQ and NATS turn '/' into '.', so '.' would split it)"
            )
        return value


class UplinkSection(Table):
    host: str = "127.0.0.1"
    port: Port = 1883
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    client_id: str | None = None  # default: "<site>-<gateway id>"
    # "3.1.1" for brokers without MQTT v5 (RabbitMQ 3.x, NATS 2.9): no flow control
    # or packet bound asked of the broker (docs/command-post.md, "MQTT 3.1.1").
    mqtt_version: Literal["5", "3.1.1"] = "5"
    topic_prefix: str = Field(default=DEFAULT_PREFIX, pattern=r"^[A-Za-z0-9_./-]+$")
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 30
    connect_timeout: Seconds = 10.0
    batch_max_readings: Annotated[int, Field(ge=1, le=10000)] = 500
    batch_interval: Seconds = 0.2
    inflight: Annotated[int, Field(ge=1, le=1000)] = 64
    backlog_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    # After a (re)connect the backlog waits for the first live message, this long at most.
    live_first_wait: Annotated[float, Field(ge=0, le=60)] = 2.0
    reconnect_min: Seconds = 0.5
    reconnect_max: Seconds = 60.0

    @check_table
    def _tls_files(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (client certificate)")
        if (self.cert_file or self.ca_file) and not self.tls:
            raise ValueError("ca_file/cert_file given but tls = false: no plaintext fallback")


class KeysSection(Table):
    signing_key: Path | None = None  # default: <state_dir>/keys/gateway.key
    # command-post public keys: files, or "ed25519:<hex>" text
    trust: list[str] = Field(default_factory=list)
    # Refused commands (bad signature, unknown key, replay…): one security event per
    # kind per window, and at most `refusal_answers` results per kind per window.
    refusal_window: Seconds = 60.0
    refusal_answers: Annotated[int, Field(ge=0, le=10_000)] = 10
    # How far a command's `issued` may lie ahead of our clock and its `expires` behind
    # it before it is not-yet-valid / expired (docs/protocol.md §8.2).
    clock_allowance: Annotated[float, Field(ge=0, le=600)] = 30.0


class OutboxSection(Table):
    path: Path | None = None  # default: <state_dir>/outbox.db
    max_bytes: Annotated[int, Field(ge=64 * 1024)] = 256 * 1024 * 1024
    max_age: Seconds = 30 * 86400
    commit_interval: Annotated[float, Field(gt=0, le=60)] = 0.1
    synchronous: Literal["normal", "full"] = "normal"


class PipelineSection(Table):
    full_report_interval: Seconds = 300.0
    queue_size: Annotated[int, Field(ge=10, le=1_000_000)] = 20_000


class LoggingSection(Table):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class ControlSection(Table):
    socket: Path | None = None  # default: <state_dir>/control.sock
    maintenance_address: str | None = None  # "127.0.0.1:8080"; off when unset


class AgentConfig(Table):
    gateway: GatewaySection
    uplink: UplinkSection = UplinkSection()
    keys: KeysSection = KeysSection()
    outbox: OutboxSection = OutboxSection()
    pipeline: PipelineSection = PipelineSection()
    logging: LoggingSection = LoggingSection()
    control: ControlSection = ControlSection()
    # kind -> validated sections; filled by load_config from the driver packages
    drivers: dict[str, list[Any]] = Field(default_factory=dict)
    # [policy] and [lighting]: filled by validate_config, whose problems they report
    # in file order with the drivers'. No [lighting] table: no lighting controller.
    policy: Policy = Field(default_factory=Policy)
    lighting: Lighting | None = None
    # [talq]: the TALQ gateway API and its CMS (docs/talq.md); no table, no TALQ
    talq: TalqSection | None = None

    @property
    def signing_key_path(self) -> Path:
        return self.keys.signing_key or self.gateway.state_dir / "keys" / "gateway.key"

    @property
    def outbox_path(self) -> Path:
        return self.outbox.path or self.gateway.state_dir / "outbox.db"

    @property
    def control_socket_path(self) -> Path:
        return self.control.socket or self.gateway.state_dir / "control.sock"

    def driver_sections(self) -> list[tuple[str, DriverSection]]:
        return [(kind, s) for kind, sections in self.drivers.items() for s in sections]

    @property
    def profile_dirs(self) -> tuple[Path, ...]:
        return _profile_dirs(self.gateway.profile_dirs)


@dataclass(frozen=True)
class LoadedConfig:
    config: AgentConfig
    path: Path
    digest: str  # sha256 of the file bytes, published in the birth message

    def driver_env(self) -> DriverEnv:
        return DriverEnv(
            state_dir=self.config.gateway.state_dir,
            config_dir=self.path.parent,
            profile_dirs=self.config.profile_dirs,
        )


# Every problem of one config file; the SDK's class, under the name the CLI knows.
ConfigError = FileProblems


def validate_config(raw: Mapping[str, Any], source: str = "<config>") -> AgentConfig:
    """Validate a parsed TOML document; raise ConfigError with every problem."""
    problems: list[str] = []
    raw = dict(raw)
    drivers_raw = raw.pop("drivers", {})

    validated_drivers: dict[str, list[Any]] = {}
    if not isinstance(drivers_raw, dict):
        problems.append(
            f"drivers: expected a table of driver kinds, got {describe_value(drivers_raw)}"
        )
        drivers_raw = {}
    kinds = known_kinds()
    names: dict[str, str] = {}
    # Profiles are resolved while driver tables validate: site folders first.
    gateway_raw = raw.get("gateway")
    site_dirs = gateway_raw.get("profile_dirs") if isinstance(gateway_raw, dict) else None
    site = [Path(d) for d in site_dirs if isinstance(d, str)] if isinstance(site_dirs, list) else []
    context = {"profile_dirs": _profile_dirs(site)}
    for kind, entries in drivers_raw.items():
        if kind not in kinds:
            problems.append(f"drivers.{kind}: unknown driver {kind!r} (known: {', '.join(kinds)})")
            continue
        if not isinstance(entries, list):
            problems.append(
                f"drivers.{kind}: expected an array of tables ([[drivers.{kind}]]), "
                f"got {describe_value(entries)}"
            )
            continue
        model = section_model(kind)
        for i, entry in enumerate(entries):
            try:
                section = model.parse(entry, context=context)
            except Invalid as err:
                problems += error_lines(err, ("drivers", kind, i))
                continue
            where = f"drivers.{kind}[{i}]"
            if section.name in names:
                problems.append(
                    f"{where}.name: {section.name!r} already used by {names[section.name]}"
                )
            names[section.name] = where
            validated_drivers.setdefault(kind, []).append(section)

    policy = Policy()
    if "policy" in raw:
        try:
            policy = load_policy(raw.pop("policy"), source)
        except ConfigError as err:
            problems += err.problems
    lighting = None
    if "lighting" in raw:
        try:
            lighting = load_lighting(raw.pop("lighting"), source)
        except ConfigError as err:
            problems += err.problems
        gateway_raw = raw.get("gateway")
        gateway: dict[str, Any] = gateway_raw if isinstance(gateway_raw, dict) else {}
        for key in ("latitude", "longitude"):
            if gateway.get(key) is None:
                problems.append(f"gateway.{key}: required by [lighting] (sun times)")
    try:
        config = AgentConfig.parse({**raw, "drivers": {}})
    except Invalid as err:
        problems += error_lines(err)
        config = None
    if problems or config is None:
        raise ConfigError(source, problems)
    return config.replace(drivers=validated_drivers, policy=policy, lighting=lighting)


def load_config(path: Path | str) -> LoadedConfig:
    """Read, parse and validate a config file. Relative paths in it are resolved
    against the file's own directory, so a config can travel with its profiles."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"(file): cannot read: {exc.strerror or exc}"]) from None
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"(file): not UTF-8 text: {exc.reason}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"(file): TOML syntax error: {exc}"]) from None
    raw = _resolve_paths(raw, path.parent.resolve())
    config = validate_config(raw, str(path))
    return LoadedConfig(config, path, hashlib.sha256(data).hexdigest())


def check_secret_files(config: AgentConfig, source: str) -> None:
    """At start: refuse secrets on disk that group or others may read (ConfigError).

    The TLS client key and the broker password file follow the gateway key's rule
    (`protocol.key_files.load_signing_key`): no bit for group or others, the file
    and its mode named, and `chmod 600` as the remedy. A missing file is left to
    the part that reads it (the uplink says why it cannot connect).
    """
    up = config.uplink
    problems = []
    for key, path, what in (
        ("uplink.key_file", up.key_file, "the TLS client key"),
        ("uplink.password_file", up.password_file, "the broker password"),
    ):
        if path is None:
            continue
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            problems.append(
                f"{key}: {path} has mode {mode:04o}, which lets group or others read "
                f"{what}; run `chmod 600 {path}` (and check who could have copied it)"
            )
    if problems:
        raise ConfigError(source, problems)


_PATH_KEYS = frozenset(
    {
        "state_dir",
        "ca_file",
        "cert_file",
        "key_file",
        "password_file",
        "signing_key",
        "path",
        "socket",
        "profile",
        "codec",
        "session_keys",
    }
)


def _profile_dirs(site: list[Path]) -> tuple[Path, ...]:
    return (*site, SHIPPED_CONFIG_DIR / "profiles")


def _resolve_paths(node: Any, base: Path) -> Any:
    """Make relative file paths absolute against the config file's directory."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _PATH_KEYS and isinstance(value, str) and _is_file_path(key, value):
                out[key] = str(base / value) if not Path(value).is_absolute() else value
            elif key == "profile_dirs" and isinstance(value, list):
                out[key] = [str(base / v) if isinstance(v, str) else v for v in value]
            elif key == "trust" and isinstance(value, list):
                from cityedge.protocol.keys import looks_like_key_text

                out[key] = [
                    str(base / v)
                    if isinstance(v, str)
                    and not looks_like_key_text(v)
                    and not Path(v).is_absolute()
                    else v
                    for v in value
                ]
            else:
                out[key] = _resolve_paths(value, base)
        return out
    if isinstance(node, list):
        return [_resolve_paths(v, base) for v in node]
    return node


_NAME_OR_PATH_KEYS = frozenset({"profile", "codec"})


def _is_file_path(key: str, value: str) -> bool:
    # profile = "lamppost" names a shipped profile; "./x.toml" or "x.toml" names a file.
    return key not in _NAME_OR_PATH_KEYS or "/" in value or value.endswith(".toml")
