"""The contract between the agent and a protocol driver, and how drivers are found.

A driver is one package `cityedge.drivers.<kind>` (the folder
`drivers/cityedge/drivers/<kind>/`) with two public names:

* its `config` module defines `Section`, a typed table (subclass of
  `DriverSection`, see `cityedge.sdk.tables`) for one `[[drivers.<kind>]]`
  table of the config file;
* its `__init__` defines `build(section, env) -> Driver`.

Optional: a `checks` module (`async def checks(sections, ctx)`, see
`cityedge.sdk.checks`) gives `cityedge check` a group named after the kind, and a
driver object may have `status()` (`Reporting`): what only it can say of itself,
as JSON-able data, for the control socket.

Adding a protocol therefore means adding a folder; the gateway's registry
(`cityedge.gateway.registry`) discovers it by name. Only the drivers named in a
config are imported, so a gateway that speaks Modbus alone never loads bleak.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cityedge.sdk.model import DeviceHealth, DeviceInfo, Emit, Reading, Value
from cityedge.sdk.tables import Field, Table


def shipped_config_dir() -> Path:
    """The folder of shipped device profiles, LoRaWAN device types and example configs.

    It is the data package `cityedge.shipped`: the repository's `config/` folder,
    which setup.py maps onto that name, so a wheel carries it and an editable
    install points at the checkout. A zipped install has no folder to search.
    """
    try:
        root = resources.files("cityedge.shipped")
    except ModuleNotFoundError:
        # An editable install made before config/ became package data maps no such name.
        raise RuntimeError(
            "cityedge.shipped (the shipped profiles and example configs) is not installed: "
            "reinstall cityedge (in a checkout: pip install -e .)"
        ) from None
    if not isinstance(root, Path):
        raise RuntimeError(
            f"cityedge.shipped is not a folder on disk ({root!r}): install cityedge "
            "as files (pip install), not as a zip archive"
        )
    return root


SHIPPED_CONFIG_DIR = shipped_config_dir()
"""Where the shipped device profiles and codecs are; see `shipped_config_dir`."""


class DriverSection(Table):
    """Common keys of every `[[drivers.<kind>]]` table."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    enabled: bool = True

    def device_names(self) -> list[str]:
        """The devices this table names (LoRaWAN's are in its sessions file, not here)."""
        return [device.name for device in getattr(self, "devices", ())]


@dataclass(frozen=True, slots=True)
class DriverEnv:
    """What a driver may know of its surroundings: where to keep its own state
    (frame counters, caches) and where to find profiles. Nothing else."""

    state_dir: Path
    config_dir: Path
    profile_dirs: tuple[Path, ...] = field(default=(SHIPPED_CONFIG_DIR / "profiles",))


@runtime_checkable
class Driver(Protocol):
    """One protocol family's long-lived task. Composition, not a base class."""

    name: str

    async def run(self, emit: Emit) -> None:
        """Open the transport, poll/listen and `await emit(items)` until cancelled.

        Raising means the driver as a whole failed; the supervisor restarts it with
        backoff. Per-device failures are not raised: they go into `health()`.
        """
        ...

    async def read(self, device: str, points: Sequence[str] | None = None) -> list[Reading]:
        """A live read on demand (technician CLI, command read-back)."""
        ...

    async def write(self, device: str, point: str, value: Value) -> None:
        """Write one point. Raises a `DeviceError` subclass on failure."""
        ...

    def health(self) -> list[DeviceHealth]: ...

    def catalogue(self) -> dict[str, DeviceInfo]:
        """The devices this driver owns and their points (for policy and the CLI)."""
        ...


@runtime_checkable
class Reporting(Protocol):
    """A driver with a status of its own beyond its devices' health (optional)."""

    def status(self) -> Mapping[str, Any]:
        """JSON-able, e.g. `{"forwarders": [...]}` for the radio gateways a driver hears."""
        ...


def driver_status(driver: Driver) -> Mapping[str, Any]:
    """`driver.status()` when the driver has one, else nothing."""
    return driver.status() if isinstance(driver, Reporting) else {}
