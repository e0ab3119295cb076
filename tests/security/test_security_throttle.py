"""Bad-command floods: bounded results and events, and every occurrence still counted
(the real CommandHandler over a real SQLite outbox and replay cache)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cityedge.gateway.commands import CommandHandler, ReplayCache, SecurityThrottle
from cityedge.gateway.policy import Policy
from cityedge.protocol.commands import seal_command
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.trust_store import TrustStore
from cityedge.sdk.model import Command, ResultCode, Value
from tests.support.outbox_probe import open_outbox, stored_entries

CENTRAL = SigningKey.from_seed(b"\x21" * 32)


def test_throttle_reports_once_per_window_with_counts() -> None:
    throttle = SecurityThrottle(window=60, answers=3)
    decisions = [throttle.note("bad-signature", 1000 + i * 0.1, "d", "k") for i in range(100)]
    assert sum(answer for answer, _ in decisions) == 3
    events = [event for _, event in decisions if event is not None]
    assert len(events) == 1 and events[0].data["count"] == 1
    assert throttle.due(1030) == []  # window not over
    (summary,) = throttle.due(1061)
    assert summary.kind == "security.bad-signature"
    assert summary.data["count"] == 99 and summary.data["unanswered"] == 97
    assert throttle.counts == {"bad-signature": 100}
    # a new window: answers again, one more event
    answer, event = throttle.note("bad-signature", 1200, "d", "k")
    assert answer and event is not None and event.data["count"] == 1
    # always-answered refusals (verified, fresh) are never suppressed
    assert all(throttle.note("denied", 1200 + i, "d", "k", answer=True)[0] for i in range(10))


def test_flood_through_the_handler_is_bounded_in_the_outbox(tmp_path: Path) -> None:
    outbox = open_outbox(tmp_path / "outbox.db", max_bytes=1 << 30, max_age=1e9)
    store = TrustStore.open(tmp_path / "trust.json", [CENTRAL.public_text()])

    async def write(device: str, point: str, value: Value) -> None:
        raise AssertionError("a refused command reached a device")

    async def read(device: str, point: str) -> Value | None:
        return None

    handler = CommandHandler(
        gateway="gw-1", trusted=store, policy=Policy(), outbox=outbox,
        replay=ReplayCache(tmp_path / "replay.db"), catalogue=dict, write=write, read=read,
        throttle=SecurityThrottle(window=3600, answers=5),
    )  # fmt: skip
    command = Command("c-1", "gw-1", None, "trust.update", {}, 1e12, 1e12 + 60, CENTRAL.key_id)
    forged = bytearray(seal_command(CENTRAL, command))
    forged[-2] ^= 1

    async def flood() -> list[ResultCode]:
        codes = [(await handler.handle(bytes(forged))).code for _ in range(300)]
        codes += [(await handler.handle(b"\x00junk")).code for _ in range(300)]
        return codes

    codes = asyncio.run(flood())
    assert codes.count(ResultCode.BAD_SIGNATURE) == 300 and codes.count(ResultCode.MALFORMED) == 300
    outbox.commit()
    rows = stored_entries(tmp_path / "outbox.db")
    results = [entry for kind, entry in rows if kind == "result"]
    events = [entry[0] for kind, entry in rows if kind == "event"]
    assert len(results) == 10  # 5 per kind
    assert sorted(events) == ["security.bad-signature", "security.malformed"]
    assert handler.throttle.suppressed_results == 600 - 10
    assert handler.security_reports(everything=True) == 2  # the rest, counted, on stop
    assert store.version == 0
    outbox.close()
