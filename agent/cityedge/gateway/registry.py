"""Which drivers exist, and how the gateway builds one: the only place that
imports `cityedge.drivers`. A driver kind is a package under `cityedge.drivers`
with a `config` module (`Section`) and a `build()` function; shared layers
(`serialline`) have no `config` and are not drivers."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import cityedge.drivers
from cityedge.sdk.checks import CheckEnv, CheckResult
from cityedge.sdk.driver import Driver, DriverEnv, DriverSection


class DriverModule(Protocol):
    def build(self, section: Any, env: DriverEnv) -> Driver: ...


class ChecksModule(Protocol):
    """`cityedge.drivers.<kind>.checks`: the driver's own diagnostic checks."""

    async def checks(self, sections: Sequence[Any], ctx: CheckEnv) -> list[CheckResult]: ...


def known_kinds() -> list[str]:
    """Packages under `cityedge.drivers` that declare a config section. Shared layers (such
    as `drivers/serialline`) have no `config.py` and are not drivers."""
    return sorted(
        m.name
        for m in pkgutil.iter_modules(cityedge.drivers.__path__)
        if m.ispkg
        and any((Path(p) / m.name / "config.py").is_file() for p in cityedge.drivers.__path__)
    )


def check_kinds() -> list[str]:
    """Drivers that bring their own `cityedge check` group (a `checks.py` module)."""
    return [
        kind
        for kind in known_kinds()
        if any((Path(p) / kind / "checks.py").is_file() for p in cityedge.drivers.__path__)
    ]


def driver_checks(kind: str) -> ChecksModule:
    """The `checks` module of driver `kind` (imported only when its group runs)."""
    if kind not in check_kinds():
        raise KeyError(kind)
    return cast(ChecksModule, importlib.import_module(f"cityedge.drivers.{kind}.checks"))


def section_model(kind: str) -> type[DriverSection]:
    """The config model of driver `kind`; KeyError if there is no such driver."""
    if kind not in known_kinds():
        raise KeyError(kind)
    module = importlib.import_module(f"cityedge.drivers.{kind}.config")
    return cast(type[DriverSection], module.Section)


def build_driver(kind: str, section: DriverSection, env: DriverEnv) -> Driver:
    module = cast(DriverModule, importlib.import_module(f"cityedge.drivers.{kind}"))
    return module.build(section, env)
