"""A fresh virtual serial cable (pseudo-terminal pair behind a symlink) per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cityedge.street.ptypair import PtyPair


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[PtyPair]:
    with PtyPair(tmp_path / "ttyUSB-test") as pair:
        yield pair
