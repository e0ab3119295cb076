"""The command post follows a gateway's key rotation only on the old key's word,
and a state message that proves the gateway holds the new key (pure verifier)."""

from __future__ import annotations

import pytest

from cityedge.central.console import lines
from cityedge.central.verifier import Verifier
from cityedge.protocol.announcements import open_key_announcement, seal_key_announcement
from cityedge.protocol.decoding import EnvelopeError
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.sealing import seal, seal_object

K0, K1, K2, OTHER, THIEF = (SigningKey.from_seed(bytes([n]) * 32) for n in (10, 11, 12, 13, 14))
TS = 1_700_000_000.0
TOPIC = "cityedge/v2/town/gw-1/state"


def state(signer: SigningKey, chain: list[bytes], gateway: str = "gw-1") -> bytes:
    data = {"status": "online", "key_announcements": chain}
    return seal_object(signer, gateway=gateway, site="town", kind="state", seq=0, ts=TS, data=data)


def announce(old: SigningKey, new: SigningKey, gateway: str = "gw-1") -> bytes:
    return seal_key_announcement(old, new.public_key, gateway=gateway, ts=TS)


def verifier() -> Verifier:
    return Verifier(
        {K0.key_id: K0.public_key, OTHER.key_id: OTHER.public_key},
        bindings={K0.key_id: "gw-1", OTHER.key_id: "gw-2"},
    )


def test_announcement_signed_by_the_trusted_key_is_followed() -> None:
    v = verifier()
    verdict = v.verify(TOPIC, state(K1, [announce(K0, K1)]))
    assert verdict.accepted and verdict.rotated == ((K0.key_id, K1.key_id),)
    assert v.bindings[K1.key_id] == "gw-1"
    assert lines(verdict)[0].startswith(f"KEY town/gw-1: now trusting {K1.key_id}")
    telemetry = seal(K1, gateway="gw-1", site="town", kind="telemetry", seq=1, ts=TS,
                     historical=False, entries=[])  # fmt: skip
    assert v.verify("cityedge/v2/town/gw-1/telemetry", telemetry).accepted
    # the new key is bound to gw-1: it cannot speak for gw-2
    other = seal(K1, gateway="gw-2", site="town", kind="telemetry", seq=1, ts=TS,
                 historical=False, entries=[])  # fmt: skip
    assert v.verify("cityedge/v2/town/gw-2/telemetry", other).reason == "wrong-gateway"


def test_a_chain_of_rotations_is_followed_from_the_key_we_know() -> None:
    v = verifier()
    verdict = v.verify(TOPIC, state(K2, [announce(K0, K1), announce(K1, K2)]))
    assert verdict.accepted and [new for _, new in verdict.rotated] == [K1.key_id, K2.key_id]


@pytest.mark.parametrize(
    ("payload", "reason", "words"),
    [
        (state(THIEF, [announce(THIEF, THIEF.__class__.from_seed(b"\x01" * 32))]),
         "unknown-key", "key announcement"),
        (state(THIEF, [announce(OTHER, THIEF)]), "wrong-gateway", "gateway 'gw-2'"),
        (state(THIEF, [announce(K0, THIEF, gateway="gw-9")]), "wrong-topic", "gw-9"),
        (state(THIEF, [announce(K0, K1)]), "unknown-key", "state carrying"),
        (state(THIEF, []), "unknown-key", "not trusted"),
    ],
    ids=["signed-by-stranger", "signed-by-another-gateway", "for-another-gateway",
         "state-not-signed-by-announced-key", "no-announcement"],
)  # fmt: skip
def test_forged_announcements_are_refused(payload: bytes, reason: str, words: str) -> None:
    v = verifier()
    verdict = v.verify(TOPIC, payload)
    assert not verdict.accepted and verdict.reason == reason, verdict
    assert words in verdict.detail
    assert set(v.gateway_keys) == {K0.key_id, OTHER.key_id}


def test_a_retired_key_is_never_brought_back() -> None:
    v = verifier()
    assert v.verify(TOPIC, state(K1, [announce(K0, K1)])).accepted
    v.retire_key(K1.key_id)
    assert v.verify(TOPIC, state(K1, [announce(K0, K1)])).reason == "wrong-gateway"


def test_announcement_cannot_pass_for_a_command_or_a_message() -> None:
    payload = announce(K0, K1)
    with pytest.raises(EnvelopeError) as err:
        open_key_announcement(payload[:-1] + bytes([payload[-1] ^ 1]), {K0.key_id: K0.public_key})
    assert err.value.code == "bad-signature"
    assert open_key_announcement(payload, {K0.key_id: K0.public_key}).new_key_id == K1.key_id
