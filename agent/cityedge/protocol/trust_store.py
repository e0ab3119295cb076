"""The gateway's trust store: which command-post keys may sign commands, and until when.

Seeded once from the config's `[keys] trust` (version 0), then changed only by
a signed `trust.update` command carrying a higher version and the full new key
set (docs/protocol.md §11). The store lives in the state dir as JSON, replaced
atomically (temporary file, fsync, rename, fsync of the directory), so a power
cut leaves the old set or the new one, and a version once reached is never
undone: a replayed or older update is refused, also after a restart.

A key is usable while it is `active` and inside its validity window. Retired
(planned end) and revoked (compromised) keys are kept as entries so that a
command signed by one is refused by name; a revoked key id stays revoked even
if a later update leaves it out, so it can never be brought back.

The gateway's own key rotation leaves an announcement here too: the new key's
id and public key signed by the old key, which the agent carries in its
retained state message until the command post has had every chance to see it.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from cityedge.protocol.announcements import MAX_ANNOUNCEMENTS, seal_key_announcement
from cityedge.protocol.decoding import Reason
from cityedge.protocol.key_files import load_signing_key, load_trust, save_key
from cityedge.protocol.keys import (
    KeyFileError,
    PublicKey,
    SigningKey,
    parse_public_text,
    public_text,
)
from cityedge.sdk.atomic import write_atomic

STORE_FORMAT: Final = 1
TRUST_UPDATE_OP: Final = "trust.update"  # the command that carries a trust update
MAX_TRUSTED_KEYS: Final = 64  # a city has a handful of command-post keys; a flood is not a key set
MAX_VERSION: Final = (1 << 53) - 1  # exact in JSON and in every MessagePack float/int reader
STORE_FILE: Final = "trust.json"
ANNOUNCEMENT_FILE: Final = "key-announcements.json"


class KeyState(StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"
    REVOKED = "revoked"


class TrustStoreError(KeyFileError):
    """The stored trust set cannot be read: the agent refuses to guess (no silent re-seed)."""


class TrustUpdateRefused(Exception):
    """A trust update that is not applied. `reason` is a stable word (docs/protocol.md §11)."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True, slots=True)
class TrustedKey:
    key_id: str
    public_key: PublicKey
    not_before: float | None = None
    not_after: float | None = None
    state: KeyState = KeyState.ACTIVE

    def refusal(self, now: float) -> str | None:
        """Why this key may not sign a command at `now` (an envelope Reason value), or None."""
        if self.state is KeyState.REVOKED:
            return Reason.REVOKED_KEY
        if self.state is KeyState.RETIRED:
            return Reason.RETIRED_KEY
        if self.not_after is not None and now > self.not_after:
            return Reason.EXPIRED_KEY
        if self.not_before is not None and now < self.not_before:
            return Reason.KEY_NOT_YET_VALID
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id, "public_key": public_text(self.public_key),
            "not_before": self.not_before, "not_after": self.not_after, "state": self.state.value,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class TrustUpdate:
    version: int
    keys: tuple[TrustedKey, ...]


def parse_trust_update(args: Mapping[str, Any]) -> TrustUpdate:
    """The args of a `trust.update` command; ValueError names the field that is wrong."""
    extra = sorted(set(args) - {"version", "keys"})
    if extra:
        raise ValueError(f"args: unexpected {', '.join(extra)} (expected version, keys)")
    version = args.get("version")
    if type(version) is not int or not 1 <= version <= MAX_VERSION:
        raise ValueError(f"args.version: expected an integer 1..2^53-1, got {version!r:.40}")
    raw_keys = args.get("keys")
    if not isinstance(raw_keys, list) or not 1 <= len(raw_keys) <= MAX_TRUSTED_KEYS:
        raise ValueError(f"args.keys: expected a list of 1-{MAX_TRUSTED_KEYS} key entries")
    keys = [_parse_entry(item, f"args.keys[{i}]") for i, item in enumerate(raw_keys)]
    seen: set[str] = set()
    for i, entry in enumerate(keys):
        if entry.key_id in seen:
            raise ValueError(f"args.keys[{i}]: key {entry.key_id} is listed twice")
        seen.add(entry.key_id)
    return TrustUpdate(version, tuple(keys))


def _parse_entry(item: Any, where: str) -> TrustedKey:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected a map")
    extra = sorted(map(str, set(item) - {"key", "key_id", "not_before", "not_after", "state"}))
    if extra:
        raise ValueError(f"{where}: unexpected {', '.join(extra)}")
    text = item.get("key")
    if not isinstance(text, str) or len(text) > 200:
        raise ValueError(f"{where}.key: expected 'ed25519:<64 hex digits>'")
    try:
        public = parse_public_text(text, f"{where}.key")
    except KeyFileError as err:
        raise ValueError(str(err)) from None
    kid = public.key_id
    if "key_id" in item and item["key_id"] != kid:
        raise ValueError(f"{where}.key_id: {item['key_id']!r:.40} is not the id of its key ({kid})")
    bounds = [
        _time_or_none(item.get(name), f"{where}.{name}") for name in ("not_before", "not_after")
    ]
    if bounds[0] is not None and bounds[1] is not None and bounds[0] >= bounds[1]:
        raise ValueError(f"{where}: not_before {bounds[0]} is not before not_after {bounds[1]}")
    state = item.get("state", KeyState.ACTIVE.value)
    try:
        parsed_state = KeyState(state) if isinstance(state, str) else KeyState("\0")
    except ValueError:
        raise ValueError(
            f"{where}.state: expected active, retired or revoked, got {state!r:.40}"
        ) from None
    return TrustedKey(kid, public, bounds[0], bounds[1], parsed_state)


def _time_or_none(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if type(value) not in (int, float) or not math.isfinite(value):
        raise ValueError(f"{where}: expected Unix seconds or nil, got {value!r:.40}")
    return float(value)


class TrustStore:
    """The command-post keys this gateway trusts, versioned and persisted."""

    def __init__(self, path: Path, version: int, keys: Mapping[str, TrustedKey]) -> None:
        self.path = path
        self.version = version
        self.keys: dict[str, TrustedKey] = dict(keys)

    # --- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, seed: Sequence[Path | str]) -> TrustStore:
        """The stored set; on first start, the config's keys as version 0 (then saved)."""
        if path.exists():
            return cls._load(path)
        trusted = load_trust(seed)
        store = cls(path, 0, {kid: TrustedKey(kid, pub) for kid, pub in trusted.items()})
        store.save()
        return store

    @classmethod
    def _load(cls, path: Path) -> TrustStore:
        remedy = "restore it from a backup, or remove it to re-seed from [keys] trust (site visit)"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise TrustStoreError(path, f"cannot read the trust store ({exc})", remedy) from None
        if not isinstance(doc, dict) or doc.get("format") != STORE_FORMAT:
            raise TrustStoreError(path, f"not a format-{STORE_FORMAT} trust store", remedy)
        version = doc.get("version")
        if type(version) is not int or not 0 <= version <= MAX_VERSION:
            raise TrustStoreError(
                path, f"version: expected an integer, got {version!r:.40}", remedy
            )
        raw = doc.get("keys")
        if not isinstance(raw, list):
            raise TrustStoreError(path, "keys: expected a list", remedy)
        keys: dict[str, TrustedKey] = {}
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                raise TrustStoreError(path, f"keys[{i}]: expected a map", remedy)
            try:
                entry = _parse_entry(
                    {
                        "key": item.get("public_key"),
                        **{k: v for k, v in item.items() if k != "public_key"},
                    },
                    f"keys[{i}]",
                )
            except ValueError as err:
                raise TrustStoreError(path, str(err), remedy) from None
            keys[entry.key_id] = entry
        return cls(path, version, keys)

    # --- asking -------------------------------------------------------------------------

    def usable(self, now: float) -> dict[str, PublicKey]:
        """Keys that may sign a command at `now`: during an overlap, old and new both."""
        return {kid: k.public_key for kid, k in self.keys.items() if k.refusal(now) is None}

    def refusal(self, kid: str, now: float) -> str | None:
        """For a key this store knows but will not use now: why (envelope Reason value)."""
        entry = self.keys.get(kid)
        return None if entry is None else entry.refusal(now)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STORE_FORMAT, "version": self.version,
            "keys": [k.to_json() for k in sorted(self.keys.values(), key=lambda k: k.key_id)],
        }  # fmt: skip

    # --- changing -----------------------------------------------------------------------

    def apply(self, update: TrustUpdate, now: float) -> None:
        """Replace the key set with `update`'s; TrustUpdateRefused leaves the store as it was.

        The signer's validity was checked when the command was opened (only usable
        keys verify); here: the version rises, a revoked key stays revoked, and at
        least one key is usable now or later, so an update cannot lock the city out.
        """
        if update.version <= self.version:
            raise TrustUpdateRefused(
                "stale-version",
                f"trust update version {update.version} is not above the stored version "
                f"{self.version}",
            )
        keys = {k.key_id: k for k in update.keys}
        for kid, old in self.keys.items():
            if old.state is not KeyState.REVOKED:
                continue
            new = keys.get(kid)
            if new is not None and new.state is not KeyState.REVOKED:
                raise TrustUpdateRefused(
                    "revoked-key", f"key {kid} was revoked; it cannot be trusted again"
                )
            keys[kid] = new or old  # the tombstone stays, so the key is refused by name
        if not any(
            k.state is KeyState.ACTIVE and (k.not_after is None or k.not_after > now)
            for k in keys.values()
        ):
            raise TrustUpdateRefused(
                "no-usable-key", "the update leaves no active, unexpired key: refused (lock-out)"
            )
        previous = (self.version, self.keys)
        self.version, self.keys = update.version, keys
        try:
            self.save()
        except OSError:
            self.version, self.keys = previous
            raise

    def save(self) -> None:
        _write_atomically(self.path, json.dumps(self.to_json(), indent=1).encode() + b"\n")


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, mode=0o600)


# --- the gateway's own key announcements ------------------------------------------------


def save_announcement(state_dir: Path, new_key_id: str, payload: bytes) -> None:
    """Append a rotation announcement (signed by the old key) to the chain kept for birth."""
    chain = _announcement_chain(state_dir / ANNOUNCEMENT_FILE)
    chain.append({"key_id": new_key_id, "payload": payload.hex()})
    data = json.dumps(chain[-MAX_ANNOUNCEMENTS:], indent=1).encode() + b"\n"
    _write_atomically(state_dir / ANNOUNCEMENT_FILE, data)


def announcements_for(state_dir: Path, key: SigningKey) -> list[bytes]:
    """The chain of announcements ending in `key`, oldest first; [] if `key` was never
    announced (first key, or a rotation that did not finish)."""
    chain = _announcement_chain(state_dir / ANNOUNCEMENT_FILE)
    ids = [item.get("key_id") for item in chain]
    if key.key_id not in ids:
        return []
    end = len(ids) - ids[::-1].index(key.key_id)
    out: list[bytes] = []
    for item in chain[:end]:
        with contextlib.suppress(TypeError, ValueError):
            out.append(bytes.fromhex(str(item.get("payload"))))
    return out


def _announcement_chain(path: Path) -> list[dict[str, Any]]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TrustStoreError(path, f"cannot read the key announcements ({exc})") from None
    if not isinstance(doc, list) or not all(isinstance(item, dict) for item in doc):
        raise TrustStoreError(path, "expected a list of announcements")
    return doc


def rotate_gateway_key(key_path: Path, state_dir: Path, gateway: str) -> tuple[str, SigningKey]:
    """Replace the gateway key at `key_path` with a new one, announced by the old.

    Order matters for a crash at any point: the announcement is saved first (it
    names a key that does not exist yet, so it is ignored), then the new key
    replaces the old atomically. The old private key is not kept: once the
    announcement is signed it has nothing left to do. Returns (old id, new key).
    """
    old = load_signing_key(key_path)
    new = SigningKey.generate()
    payload = seal_key_announcement(old, new.public_key, gateway=gateway, ts=time.time())
    save_announcement(state_dir, new.key_id, payload)
    save_key(key_path, new, overwrite=True)
    return old.key_id, new
