"""Fixtures of the BLE tests: the fakes at the bleak boundary, a driver factory, log capture."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from cityedge.drivers.ble.driver import BleDriver
from cityedge.sdk.driver import DriverEnv
from tests.ble.fake_bleak import FakeAir, FakeGatt
from tests.ble.support import section


@pytest.fixture
def air() -> FakeAir:
    return FakeAir()


@pytest.fixture
def gatt() -> FakeGatt:
    return FakeGatt()


@pytest.fixture
def env(tmp_path: Path) -> DriverEnv:
    state = tmp_path / "state"
    state.mkdir()
    return DriverEnv(state_dir=state, config_dir=tmp_path)


@pytest.fixture
def make_driver(air: FakeAir, gatt: FakeGatt, env: DriverEnv) -> Callable[..., BleDriver]:
    def make(**overrides: Any) -> BleDriver:
        return BleDriver(
            section(**overrides),
            env,
            scanner_factory=air.scanner_factory,
            client_factory=gatt,
        )

    return make


@pytest.fixture
def structlog_output() -> Iterator[io.StringIO]:
    """Everything our code logs through structlog, rendered, at DEBUG level."""
    buffer = io.StringIO()
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(0),
        logger_factory=structlog.PrintLoggerFactory(file=buffer),
        cache_logger_on_first_use=False,
    )
    try:
        yield buffer
    finally:
        structlog.reset_defaults()
