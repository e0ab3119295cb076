"""Fixtures of the protocol tests: the fixed keys of the test vectors and a real broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cityedge.protocol.keys import SigningKey
from cityedge.street.broker import Broker
from tests.protocol.vectors import command_post_key, gateway_key


@pytest.fixture(scope="session")
def gw_key() -> SigningKey:
    return gateway_key()


@pytest.fixture(scope="session")
def cp_key() -> SigningKey:
    return command_post_key()


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    with Broker(persistence=False) as running:
        yield running
