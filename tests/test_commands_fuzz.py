"""Property-based fuzzing of the command path: decoder and every check.

10,000 random, mutated and validly signed payloads go through the real
CommandHandler (real envelope decoding, real replay cache and outbox in SQLite).
The driver boundary is a counting write function: the property is that it is
called only for commands that are valid, signed by a trusted key, fresh, meant
for this gateway and allowed by policy — and that every payload gets an answer.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cityedge.gateway.commands import CommandHandler, ReplayCache
from cityedge.gateway.policy import Policy
from cityedge.protocol.commands import seal_command
from cityedge.protocol.keys import SigningKey
from cityedge.sdk.model import Command, DeviceInfo, PointAccess, PointInfo, ResultCode, Value
from tests.support.outbox_probe import open_outbox

CENTRAL = SigningKey.from_seed(bytes(range(32)))
STRANGER = SigningKey.from_seed(bytes(range(1, 33)))
DEVICES = {
    "lamppost-001": DeviceInfo(
        "lamppost-001", "lamppost", "street",
        {
            "dimming": PointInfo("dimming", "int", "%", PointAccess.READ_WRITE, 0, 100),
            "power": PointInfo("power", "float", "W"),
        },
    )
}  # fmt: skip
POLICY = Policy.parse({"lamppost": {"writes": {"dimming": {"min": 0, "max": 100}}}})


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.writes: list[tuple[str, str, Value]] = []
        self.outbox = open_outbox(tmp / "outbox.db", max_bytes=1 << 30, max_age=1e9)
        self.handler = CommandHandler(
            gateway="gw-1",
            trusted={CENTRAL.key_id: CENTRAL.public_key},
            policy=POLICY,
            outbox=self.outbox,
            replay=ReplayCache(Path(":memory:")),
            catalogue=lambda: DEVICES,
            write=self.write,
            read=self.read,
        )
        self.loop = asyncio.new_event_loop()

    async def write(self, device: str, point: str, value: Value) -> None:
        self.writes.append((device, point, value))

    async def read(self, device: str, point: str) -> Value | None:
        return self.writes[-1][2] if self.writes else None

    def handle(self, payload: bytes) -> ResultCode:
        before = len(self.writes)
        result = self.loop.run_until_complete(self.handler.handle(payload))
        wrote = len(self.writes) - before
        assert wrote in (0, 1)
        assert (wrote == 1) == (result.code == ResultCode.DONE), result
        return result.code


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    rig = Rig(tmp_path_factory.mktemp("fuzz"))
    yield rig
    rig.loop.close()
    rig.outbox.close()


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples, deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )  # fmt: skip


values = st.one_of(
    st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.booleans(),
    st.text(max_size=20), st.none(), st.binary(max_size=8),
)  # fmt: skip


def command(**fields: object) -> Command:
    now = time.time()
    base = dict(id="c", target="gw-1", device="lamppost-001", op="write",
                args={"point": "dimming", "value": 10}, issued=now, expires=now + 60,
                key_id=CENTRAL.key_id)  # fmt: skip
    base.update(fields)
    return Command(**base)  # type: ignore[arg-type]


@fuzz(3500)
@given(st.binary(max_size=600))
def test_random_bytes_are_answered_and_never_write(rig: Rig, payload: bytes) -> None:
    assert rig.handle(payload) != ResultCode.DONE


@fuzz(3500)
@given(st.data())
def test_mutated_valid_commands_never_write(rig: Rig, data: st.DataObject) -> None:
    cid = data.draw(st.uuids()).hex
    original = seal_command(CENTRAL, command(id=cid))
    payload = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] ^= data.draw(st.integers(1, 255))
    assume(bytes(payload) != original)  # two flips of one byte may cancel out
    assert rig.handle(bytes(payload)) != ResultCode.DONE


@fuzz(3000)
@given(
    cid=st.uuids(),
    target=st.sampled_from(["gw-1", "gw-2", ""]),
    device=st.sampled_from(["lamppost-001", "lamppost-002", None]),
    op=st.sampled_from(["write", "ping", "reboot", ""]),
    point=st.sampled_from(["dimming", "power", "nope", ""]),
    value=values,
    skew=st.sampled_from([0.0, -7200.0, 7200.0]),
    ttl=st.sampled_from([60.0, -1.0, 1e9]),
    stranger=st.booleans(),
)
def test_signed_commands_write_only_when_everything_allows(
    rig: Rig, cid: object, target: str, device: str | None, op: str, point: str,
    value: object, skew: float, ttl: float, stranger: bool,
) -> None:  # fmt: skip
    now = time.time() + skew
    signer = STRANGER if stranger else CENTRAL
    try:
        cmd = command(id=cid.hex, target=target, device=device, op=op,  # type: ignore[attr-defined]
                      args={"point": point, "value": value}, issued=now, expires=now + ttl,
                      key_id=signer.key_id)  # fmt: skip
        payload = seal_command(signer, cmd)
    except (ValueError, TypeError):
        return  # the command post's own library refuses to sign nonsense
    code = rig.handle(payload)
    allowed = (
        not stranger and target == "gw-1" and device == "lamppost-001" and op == "write"
        and point == "dimming" and skew == 0.0 and ttl == 60.0
        and isinstance(value, int | float) and not isinstance(value, bool)
        and math.isfinite(value) and float(value).is_integer() and 0 <= value <= 100
    )  # fmt: skip
    assert (code == ResultCode.DONE) == allowed, code
