"""The test broker's own port handling: a port it picked that another process took
before mosquitto could bind it is replaced at the first start (two test workers pick
ports side by side); a port given, or a restart, never moves."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cityedge.street import broker as broker_module
from cityedge.street.broker import Broker, free_port


@pytest.fixture
def taken() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        yield int(squatter.getsockname()[1])


def test_a_picked_port_taken_before_the_bind_is_replaced(
    taken: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    picks = iter([taken])
    monkeypatch.setattr(broker_module, "free_port", lambda: next(picks, None) or free_port())
    with Broker(workdir=tmp_path) as broker:
        assert broker.port != taken
        assert broker.process is not None and broker.process.poll() is None  # ours listens
        port = broker.port
        broker.stop()
        broker.start()  # an outage: the same port again
        assert broker.port == port


def test_a_given_port_never_moves(taken: int, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="exited at start"):
        Broker(taken, workdir=tmp_path).start()
