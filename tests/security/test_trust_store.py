"""The gateway's trust store on real files: seeded once, changed only upward, persisted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cityedge.protocol.keys import SigningKey
from cityedge.protocol.trust_store import (
    KeyState,
    TrustedKey,
    TrustStore,
    TrustStoreError,
    TrustUpdate,
    TrustUpdateRefused,
    parse_trust_update,
)

A, B, C = (SigningKey.from_seed(bytes([n]) * 32) for n in (1, 2, 3))
NOW = 1_700_000_000.0


def entry(key: SigningKey, **kw: object) -> TrustedKey:
    return TrustedKey(key.key_id, key.public_key, **kw)  # type: ignore[arg-type]


def test_seeded_once_from_the_config_then_the_file_wins(tmp_path: Path) -> None:
    path = tmp_path / "trust.json"
    store = TrustStore.open(path, [A.public_text()])
    assert store.version == 0 and set(store.usable(NOW)) == {A.key_id}
    assert path.stat().st_mode & 0o777 == 0o600
    # A changed config does not change the trust store: only signed updates do.
    again = TrustStore.open(path, [B.public_text()])
    assert set(again.usable(NOW)) == {A.key_id}


def test_versions_only_rise_and_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "trust.json"
    store = TrustStore.open(path, [A.public_text()])
    store.apply(TrustUpdate(3, (entry(A), entry(B))), NOW)
    reopened = TrustStore.open(path, [])
    assert reopened.version == 3 and set(reopened.usable(NOW)) == {A.key_id, B.key_id}
    for version in (3, 2):
        with pytest.raises(TrustUpdateRefused) as refused:
            reopened.apply(TrustUpdate(version, (entry(C),)), NOW)
        assert refused.value.reason == "stale-version"
    assert TrustStore.open(path, []).version == 3


def test_window_and_states_name_the_refusal(tmp_path: Path) -> None:
    store = TrustStore.open(tmp_path / "t.json", [A.public_text()])
    store.apply(
        TrustUpdate(1, (entry(A, not_after=NOW + 10), entry(B, not_before=NOW + 5), entry(C))),
        NOW,
    )
    assert set(store.usable(NOW)) == {A.key_id, C.key_id}
    assert store.refusal(B.key_id, NOW) == "key-not-yet-valid"
    assert set(store.usable(NOW + 6)) == {A.key_id, B.key_id, C.key_id}  # overlap
    assert store.refusal(A.key_id, NOW + 11) == "expired-key"
    store.apply(TrustUpdate(2, (entry(A, state=KeyState.RETIRED), entry(C))), NOW)
    assert store.refusal(A.key_id, NOW) == "retired-key"
    assert store.refusal(B.key_id, NOW) is None  # left out: simply unknown now
    assert B.key_id not in store.usable(NOW)


def test_a_revoked_key_stays_revoked(tmp_path: Path) -> None:
    store = TrustStore.open(tmp_path / "t.json", [A.public_text(), B.public_text()])
    store.apply(TrustUpdate(1, (entry(A, state=KeyState.REVOKED), entry(B))), NOW)
    store.apply(TrustUpdate(2, (entry(B),)), NOW)  # A left out: its tombstone stays
    assert store.refusal(A.key_id, NOW) == "revoked-key"
    with pytest.raises(TrustUpdateRefused) as refused:
        store.apply(TrustUpdate(3, (entry(A), entry(B))), NOW)
    assert refused.value.reason == "revoked-key"
    assert store.version == 2


def test_an_update_that_locks_everyone_out_is_refused(tmp_path: Path) -> None:
    store = TrustStore.open(tmp_path / "t.json", [A.public_text()])
    for keys in ((entry(A, state=KeyState.RETIRED),), (entry(A, not_after=NOW - 1),)):
        with pytest.raises(TrustUpdateRefused) as refused:
            store.apply(TrustUpdate(1, keys), NOW)
        assert refused.value.reason == "no-usable-key"
    assert store.version == 0 and set(store.usable(NOW)) == {A.key_id}


@pytest.mark.parametrize(
    ("args", "where"),
    [
        ({"version": 0, "keys": [{"key": "x"}]}, "args.version"),
        ({"version": True, "keys": [{"key": "x"}]}, "args.version"),
        ({"version": 1, "keys": []}, "args.keys"),
        ({"version": 1, "keys": [{"key": "ed25519:00"}]}, "args.keys[0].key"),
        ({"version": 1, "keys": [{"key": A.public_text(), "key_id": "0" * 16}]}, "key_id"),
        ({"version": 1, "keys": [{"key": A.public_text(), "state": "gone"}]}, "state"),
        ({"version": 1, "keys": [{"key": A.public_text(), "not_after": "soon"}]}, "not_after"),
        ({"version": 1, "keys": [{"key": A.public_text(), "not_before": 5, "not_after": 4}]},
         "not_before"),
        ({"version": 1, "keys": [{"key": A.public_text()}, {"key": A.public_text()}]}, "twice"),
        ({"version": 1, "keys": [{"key": A.public_text()}], "extra": 1}, "unexpected extra"),
    ],
)  # fmt: skip
def test_bad_updates_name_the_field(args: dict[str, object], where: str) -> None:
    with pytest.raises(ValueError, match=r"\S") as err:
        parse_trust_update(args)
    assert where in str(err.value)


def test_a_damaged_store_is_an_error_naming_the_file_not_a_silent_reseed(tmp_path: Path) -> None:
    path = tmp_path / "trust.json"
    TrustStore.open(path, [A.public_text()])
    damages = [
        "{not json",
        json.dumps({"format": 1, "version": -1, "keys": []}),
        json.dumps({"format": 1, "version": 2, "keys": [{"public_key": "x"}]}),
    ]
    for damage in damages:
        path.write_text(damage)
        with pytest.raises(TrustStoreError) as err:
            TrustStore.open(path, [A.public_text()])
        assert str(path) in str(err.value) and "remove it" in str(err.value)
