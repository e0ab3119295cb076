"""The command post's verifier: what it accepts, what it refuses and why, duplicates
dropped, gaps reported and filled, memory bounded."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.central.sequence import SeqStatus, SequenceTracker
from cityedge.central.trust import load_gateway_trust
from cityedge.central.verifier import Gap, Outcome, Verifier
from cityedge.protocol.commands import seal_command
from cityedge.protocol.entries import reading_entry
from cityedge.protocol.keys import KeyFileError, SigningKey
from cityedge.protocol.sealing import seal, seal_object
from cityedge.protocol.topics import TopicError, parse_topic, topic_for, watch_filter
from cityedge.sdk.model import Command, Reading

GW17 = SigningKey.from_seed(bytes([17]) * 32)
GW18 = SigningKey.from_seed(bytes([18]) * 32)
CP = SigningKey.from_seed(bytes([1]) * 32)
KEYS = {GW17.key_id: GW17.public_key, GW18.key_id: GW18.public_key}
BASE = "cityedge/v2/old-town"


def forged(payload: bytes) -> bytes:
    """The payload with the last byte of its signature changed."""
    return payload[:-1] + bytes([payload[-1] ^ 1])


def telemetry(
    seq: int,
    *,
    key: SigningKey = GW17,
    gateway: str = "gw-17",
    kind: str = "telemetry",
    site: str = "old-town",
    hist: bool = False,
) -> bytes:
    entry = reading_entry(Reading("lamppost-03", "power", float(seq), 1.0, "W"))
    return seal(
        key,
        gateway=gateway,
        site=site,
        kind=kind,
        seq=seq,
        ts=1.0,
        historical=hist,
        entries=[entry],
    )


def topic(gateway: str = "gw-17", suffix: str = "telemetry") -> str:
    return f"{BASE}/{gateway}/{suffix}"


def test_accepts_and_decodes() -> None:
    verdict = Verifier(KEYS).verify(topic(), telemetry(1))
    assert verdict.outcome is Outcome.ACCEPTED and verdict.accepted
    assert verdict.message is not None
    assert verdict.message.readings[0].value == 1.0
    assert verdict.reason is None and verdict.gap is None and not verdict.late


def test_duplicates_are_reported_and_dropped() -> None:
    verifier = Verifier(KEYS)
    payload = telemetry(5)
    assert verifier.verify(topic(), payload).accepted
    again = verifier.verify(topic(), payload)  # resent after a crash: same bytes, same seq
    assert again.outcome is Outcome.DUPLICATE
    assert again.reason == "duplicate"
    assert "seq 5 already delivered" in again.detail
    assert verifier.stats()["gw-17"].duplicates == 1
    assert verifier.stats()["gw-17"].messages == 1


def test_gaps_open_fill_late_and_are_listed() -> None:
    verifier = Verifier(KEYS)
    assert verifier.verify(topic(), telemetry(10)).gap is None
    assert verifier.verify(topic(), telemetry(11)).gap is None
    jump = verifier.verify(topic(), telemetry(15))
    assert jump.accepted and jump.gap == (12, 14)
    assert verifier.missing() == [Gap("gw-17", 12, 14)]
    backlog = verifier.verify(topic(), telemetry(13, hist=True))
    assert backlog.accepted and backlog.late
    assert verifier.missing() == [Gap("gw-17", 12, 12), Gap("gw-17", 14, 14)]
    verifier.verify(topic(), telemetry(12))
    verifier.verify(topic(), telemetry(14))
    assert verifier.missing() == []
    assert verifier.verify(topic(), telemetry(13)).outcome is Outcome.DUPLICATE
    stats = verifier.stats()["gw-17"]
    assert (stats.messages, stats.late, stats.last_seq, stats.historical_entries) == (6, 3, 15, 1)


def test_sequences_are_per_gateway() -> None:
    verifier = Verifier(KEYS)
    assert verifier.verify(topic(), telemetry(1)).accepted
    assert verifier.verify(topic("gw-18"), telemetry(1, key=GW18, gateway="gw-18")).accepted
    assert verifier.verify(topic("gw-18"), telemetry(4, key=GW18, gateway="gw-18")).gap == (2, 3)
    assert verifier.missing() == [Gap("gw-18", 2, 3)]


def test_old_messages_below_the_window_are_dropped_as_stale() -> None:
    verifier = Verifier(KEYS, window=100)
    verifier.verify(topic(), telemetry(1000))
    assert verifier.verify(topic(), telemetry(950)).accepted  # within the window: late
    stale = verifier.verify(topic(), telemetry(900))
    assert stale.outcome is Outcome.DUPLICATE and stale.reason == "stale"
    assert verifier.missing() == []  # nothing is reported below the first seq seen


def test_holes_are_bounded() -> None:
    verifier = Verifier(KEYS, max_holes=8)
    for seq in range(0, 400, 2):  # every other message lost: 199 holes opened
        verifier.verify(topic(), telemetry(seq))
    missing = verifier.missing()
    assert len(missing) <= 8
    assert missing[-1] == Gap("gw-17", 397, 397)
    tracker_forgot = 199 - len(missing)
    assert verifier._sequences["gw-17"].forgotten == tracker_forgot
    assert verifier.verify(topic(), telemetry(1)).reason == "stale"


def test_state_is_accepted_without_sequence_tracking() -> None:
    verifier = Verifier(KEYS)
    state = seal_object(
        GW17,
        gateway="gw-17",
        site="old-town",
        kind="state",
        seq=3,
        ts=2.0,
        data={"status": "online"},
    )
    for _ in range(2):  # retained and re-delivered: never a duplicate
        verdict = verifier.verify(topic(suffix="state"), state)
        assert verdict.accepted and verdict.message is not None
        assert verdict.message.state == {"status": "online"}
    assert verifier.missing() == []
    assert verifier.verify(topic(), telemetry(3)).accepted  # the state's seq was not taken


@pytest.mark.parametrize(
    ("where", "payload", "reason", "detail"),
    [
        (topic("gw-18"), telemetry(1), "wrong-topic", "gateway 'gw-17' (topic says 'gw-18')"),
        (topic(suffix="events"), telemetry(1), "wrong-topic", "kind 'telemetry'"),
        ("cityedge/v2/new-town/gw-17/telemetry", telemetry(1), "wrong-topic", "site"),
        ("elsewhere/old-town/gw-17/telemetry", telemetry(1), "wrong-topic", "not under"),
        (topic(suffix="telemetry/extra"), telemetry(1), "wrong-topic", "unknown suffix"),
        (f"{BASE}/gw+1/telemetry", telemetry(1), "wrong-topic", "site and gateway"),
        (topic(), forged(telemetry(1)), "bad-signature", "does not verify"),
        (topic(), telemetry(1, key=CP), "unknown-key", CP.key_id),
        (topic(), b"", "malformed", "not valid MessagePack"),
    ],
)
def test_rejections_say_why(where: str, payload: bytes, reason: str, detail: str) -> None:
    verifier = Verifier(KEYS)
    verdict = verifier.verify(where, payload)
    assert verdict.outcome is Outcome.REJECTED and not verdict.accepted
    assert verdict.reason == reason
    assert detail in verdict.detail
    assert verifier.rejected[reason] == 1


def test_a_key_speaks_for_one_gateway_only() -> None:
    bound = Verifier(KEYS, bindings={GW17.key_id: "gw-17"})
    forged = telemetry(1, key=GW17, gateway="gw-18")  # gw-17's key, claiming to be gw-18
    verdict = bound.verify(topic("gw-18"), forged)
    assert verdict.reason == "wrong-gateway"
    assert "belongs to gateway 'gw-17'" in verdict.detail
    learning = Verifier(KEYS)  # no binding given: the first gateway seen with a key owns it
    assert learning.verify(topic(), telemetry(1)).accepted
    assert learning.verify(topic("gw-18"), forged).reason == "wrong-gateway"
    trusting = Verifier(KEYS, learn_bindings=False)
    assert trusting.verify(topic(), telemetry(1)).accepted
    assert trusting.verify(topic("gw-18"), forged).accepted


def test_commands_on_the_bus() -> None:
    cmd = Command("c-1", "gw-17", "lamppost-03", "write", {"value": 1}, 1.0, 2.0, "")
    payload = seal_command(CP, cmd)
    skipped = Verifier(KEYS).verify(topic(suffix="cmd"), payload)
    assert skipped.outcome is Outcome.SKIPPED
    checking = Verifier(KEYS, command_keys={CP.key_id: CP.public_key})
    accepted = checking.verify(topic(suffix="cmd"), payload)
    assert accepted.accepted and accepted.command is not None
    assert accepted.command.key_id == CP.key_id
    misrouted = checking.verify(topic("gw-18", "cmd"), payload)
    assert misrouted.reason == "wrong-topic"
    forged = checking.verify(topic(suffix="cmd"), seal_command(GW17, cmd))
    assert forged.reason == "unknown-key"


def test_gateway_trust_specs(tmp_path: object) -> None:
    trust = load_gateway_trust([f"gw-17={GW17.public_text()}", GW18.public_text()])
    assert set(trust.keys) == {GW17.key_id, GW18.key_id}
    assert trust.bindings == {GW17.key_id: "gw-17"}
    with pytest.raises(KeyFileError, match="already bound to gateway 'gw-17'"):
        load_gateway_trust([f"gw-17={GW17.public_text()}", f"gw-18={GW17.public_text()}"])
    with pytest.raises(KeyFileError, match=r"not a public key|no such file"):
        load_gateway_trust(["gw-17=nonsense"])


def test_topics() -> None:
    assert topic_for("p/q", "s", "g", "result") == "p/q/s/g/cmd/result"
    assert watch_filter("cityedge/v2") == "cityedge/v2/+/+/#"
    parsed = parse_topic("p/q/s/g/cmd/result", "p/q")
    assert (parsed.site, parsed.gateway, parsed.kind) == ("s", "g", "result")
    assert str(parsed) == "p/q/s/g/cmd/result"
    with pytest.raises(TopicError, match="expected"):
        parse_topic("p/q/s", "p/q")


# --- the sequence tracker against a model that remembers everything ------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 60), max_size=120))
def test_tracker_matches_a_set_when_nothing_is_forgotten(seqs: list[int]) -> None:
    tracker = SequenceTracker(window=10_000, max_runs=10_000)
    seen: set[int] = set()
    for seq in seqs:
        observed = tracker.observe(seq)
        if seq in seen:
            assert observed.status is SeqStatus.DUPLICATE
            continue
        high = max(seen) if seen else None
        assert observed.status is (SeqStatus.NEW if high is None or seq > high else SeqStatus.LATE)
        assert observed.opened == (
            (high + 1, seq - 1) if high is not None and seq > high + 1 else None
        )
        seen.add(seq)
    if seen:
        origin = seqs[0]
        holes = sorted(set(range(origin, max(seen) + 1)) - seen)
        assert [s for first, last in tracker.missing() for s in range(first, last + 1)] == holes


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5000), max_size=300), st.integers(1, 200), st.integers(2, 12))
def test_tracker_never_accepts_twice_and_stays_bounded(
    seqs: list[int], window: int, max_runs: int
) -> None:
    tracker = SequenceTracker(window=window, max_runs=max_runs)
    accepted: set[int] = set()
    for seq in seqs:
        status = tracker.observe(seq).status
        if status in (SeqStatus.NEW, SeqStatus.LATE):
            assert seq not in accepted
            accepted.add(seq)
        assert len(tracker._starts) <= max_runs
        for first, last in tracker.missing():
            assert first >= tracker.floor and last < (tracker.high or 0)
            assert not any(first <= s <= last for s in accepted)


def test_messages_are_decoded_only_after_the_signature() -> None:
    # a body that would blow up a lax decoder is never looked at without a valid signature
    body = msgpack.packb({"v": 2, "gw": "gw-17"})
    outer = msgpack.packb({"v": 2, "kid": GW17.key_id, "body": body, "sig": b"\0" * 64})
    verdict = Verifier(KEYS).verify(topic(), outer)
    assert verdict.reason == "bad-signature"
