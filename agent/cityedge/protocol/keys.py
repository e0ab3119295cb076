"""Ed25519 keys: a signing key and its public half, key ids, and their text forms.

A gateway signs everything it sends with its own key; the command post signs
commands with one of its keys. Private keys are PEM PKCS#8; public keys travel
as text, either PEM or the one-line form `ed25519:<64 hex digits>` that fits in
a TOML list or a command line. Files on disk are `cityedge.protocol.key_files`.

A key is named by its key id: the first 16 hex digits of SHA-256 over the raw
32-byte public key (docs/protocol.md). Envelopes carry the id, never the key.

The arithmetic is libsodium's (PyNaCl), not `cryptography`'s: the daemon needs
nothing but Ed25519, and `cryptography` would cost it a second OpenSSL (6.6 MB
resident against 1.2). PyNaCl has no PEM: `cityedge.protocol.pem` has the two
fixed RFC 8410 encodings an Ed25519 key has.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import nacl.bindings
import nacl.signing
from nacl.exceptions import BadSignatureError

from cityedge.protocol.pem import (
    ED25519_OID,
    LEGACY_LABELS,
    PKCS8_PREFIX,
    PKCS8_V2_PREFIX,
    PKCS8_V2_PUBLIC,
    SEED_BYTES,
    SPKI_PREFIX,
    algorithm_oid,
    other_algorithm,
    pem_text,
    read_pem,
)

PUBLIC_TEXT_PREFIX = "ed25519:"
KEY_ID_LENGTH = 16  # hex digits: 64 bits, plenty to tell a city's keys apart
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
KEY_ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")


class KeyFileError(Exception):
    """A key (file or text) that cannot be used: names where, what is wrong, and a remedy."""

    def __init__(self, where: str | Path, problem: str, remedy: str = "") -> None:
        self.where = str(where)
        self.problem = problem
        self.remedy = remedy
        text = f"{self.where}: {problem}"
        super().__init__(f"{text} — {remedy}" if remedy else text)


class PublicKey:
    """An Ed25519 public key: 32 raw bytes that libsodium accepts as a point. Immutable;
    equal and hashed by its bytes."""

    __slots__ = ("_raw", "_verify_key", "key_id")

    _raw: bytes
    _verify_key: nacl.signing.VerifyKey
    key_id: str  # first 16 hex digits of SHA-256 over the raw 32-byte key

    def __init__(self, raw: bytes) -> None:
        """The key from its 32 raw bytes; ValueError for a wrong length or a bad point."""
        raw = bytes(raw)
        if len(raw) != PUBLIC_KEY_BYTES:
            raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
        # libsodium's verify refuses small-order, non-canonical and off-curve keys;
        # say so once, when the key is read, rather than at every message.
        if nacl.bindings.has_crypto_core_ed25519 and not (
            nacl.bindings.crypto_core_ed25519_is_valid_point(raw)
        ):
            raise ValueError("not a valid Ed25519 point")
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_verify_key", nacl.signing.VerifyKey(raw))
        key_id = hashlib.sha256(raw).hexdigest()[:KEY_ID_LENGTH]
        object.__setattr__(self, "key_id", key_id)

    @property
    def raw(self) -> bytes:
        return self._raw

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True if `signature` is this key's over `data`; a bad signature is False, never
        an exception."""
        if len(signature) != SIGNATURE_BYTES:
            return False
        try:
            self._verify_key.verify(bytes(data), bytes(signature))
        except BadSignatureError:
            return False
        return True

    def pem(self) -> str:
        """SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`)."""
        return pem_text("PUBLIC KEY", SPKI_PREFIX + self._raw)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"PublicKey is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"PublicKey is immutable: cannot delete {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        # copy and pickle go through the constructor, not through __setattr__
        return (PublicKey, (self._raw,))

    def __eq__(self, other: object) -> bool:
        return self._raw == other._raw if isinstance(other, PublicKey) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        return f"PublicKey(key_id={self.key_id!r})"


def public_text(public_key: PublicKey) -> str:
    """The one-line form: `ed25519:<64 lowercase hex digits>`."""
    return PUBLIC_TEXT_PREFIX + public_key.raw.hex()


class SigningKey:
    """A private Ed25519 key and its public half. Never prints the secret."""

    __slots__ = ("_private", "key_id", "path", "public_key")

    def __init__(self, private_key: nacl.signing.SigningKey, path: Path | None = None) -> None:
        self._private = private_key
        self.public_key = PublicKey(bytes(private_key.verify_key))
        self.key_id: str = self.public_key.key_id
        self.path = path

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """A key from its 32-byte seed: for test vectors and tests, where bytes must be fixed."""
        return cls(nacl.signing.SigningKey(bytes(seed)))

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(nacl.signing.SigningKey.generate())

    def sign(self, data: bytes) -> bytes:
        """The 64-byte signature over `data` (PyNaCl returns it followed by the message)."""
        return self._private.sign(bytes(data)).signature

    def public_text(self) -> str:
        return public_text(self.public_key)

    def private_pem(self) -> bytes:
        """PEM PKCS#8, unencrypted: the file is protected by its mode, 0600."""
        return pem_text("PRIVATE KEY", PKCS8_PREFIX + bytes(self._private)).encode("ascii")

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        return f"SigningKey(key_id={self.key_id!r}{where})"


# --- reading keys from their text forms ---------------------------------------------------


def _private_from_der(der: bytes, path: Path) -> nacl.signing.SigningKey:
    if len(der) == len(PKCS8_PREFIX) + SEED_BYTES and der.startswith(PKCS8_PREFIX):
        return nacl.signing.SigningKey(der[len(PKCS8_PREFIX) :])
    seed_end = len(PKCS8_V2_PREFIX) + SEED_BYTES
    if (
        len(der) == seed_end + len(PKCS8_V2_PUBLIC) + PUBLIC_KEY_BYTES
        and der.startswith(PKCS8_V2_PREFIX)
        and der[seed_end:].startswith(PKCS8_V2_PUBLIC)
    ):
        private = nacl.signing.SigningKey(der[len(PKCS8_V2_PREFIX) : seed_end])
        if bytes(private.verify_key) != der[-PUBLIC_KEY_BYTES:]:
            raise KeyFileError(path, "the public key in the file does not match its private key")
        return private
    oid = algorithm_oid(der, private=True)
    if oid is None:
        raise KeyFileError(
            path,
            "not a PEM private key",
            "expected '-----BEGIN PRIVATE KEY-----' as written by `cityedge keys init`",
        )
    if oid == ED25519_OID:  # attributes or another layout RFC 8410 does not write
        raise KeyFileError(
            path,
            "an Ed25519 private key in a form cityedge does not read",
            "write it as plain PKCS#8, e.g. `openssl pkey -in KEY -out NEW`",
        )
    raise KeyFileError(path, f"holds {other_algorithm(oid)}, expected an Ed25519 key")


def parse_private_pem(data: bytes, path: Path) -> SigningKey:
    """The signing key in the PEM `data` read from `path`; KeyFileError says what the
    file holds instead (a public key, an encrypted key, another algorithm)."""
    if b"PUBLIC KEY" in data and b"PRIVATE KEY" not in data:
        raise KeyFileError(path, "holds a public key, not a private key")
    if data.lstrip().startswith(PUBLIC_TEXT_PREFIX.encode()):
        raise KeyFileError(path, "holds a public key (ed25519:…), not a private key")
    block = read_pem(data)
    if block is not None and (
        block.label == "ENCRYPTED PRIVATE KEY" or b"ENCRYPTED" in block.headers
    ):
        raise KeyFileError(
            path, "the key is encrypted; cityedge keys are stored unencrypted, mode 0600"
        )
    if block is not None and block.der is not None:
        if block.label == "PRIVATE KEY":
            return SigningKey(_private_from_der(block.der, path), path)
        legacy = LEGACY_LABELS.get(block.label.removesuffix(" PRIVATE KEY"))
        if legacy is not None:
            raise KeyFileError(path, f"holds {legacy}, expected an Ed25519 key")
    raise KeyFileError(
        path,
        "not a PEM private key",
        "expected '-----BEGIN PRIVATE KEY-----' as written by `cityedge keys init`",
    )


def looks_like_key_text(text: str) -> bool:
    """True for the forms of a key given inline rather than as a file name."""
    stripped = text.strip()
    return (
        stripped.startswith((PUBLIC_TEXT_PREFIX, "-----BEGIN"))
        or _HEX64.match(stripped) is not None
    )


def parse_public_text(text: str, where: str | Path) -> PublicKey:
    """PEM (SubjectPublicKeyInfo), `ed25519:<hex>` or 64 bare hex digits."""
    stripped = text.strip()
    if stripped.startswith("-----BEGIN"):
        if "PRIVATE KEY" in stripped:
            raise KeyFileError(
                where,
                "is a private key; never hand it out",
                "give its public half instead: `cityedge keys show`",
            )
        return _public_from_pem(stripped.encode("ascii", "replace"), where)
    hex_part = stripped.removeprefix(PUBLIC_TEXT_PREFIX)
    if _HEX64.match(hex_part) is None:
        raise KeyFileError(
            where,
            "not a public key",
            "expected PEM ('-----BEGIN PUBLIC KEY-----'), 'ed25519:<64 hex digits>' "
            "or 64 hex digits",
        )
    try:
        return PublicKey(bytes.fromhex(hex_part))
    except ValueError:
        raise KeyFileError(where, "not a valid Ed25519 public key") from None


def _public_from_pem(data: bytes, where: str | Path) -> PublicKey:
    block = read_pem(data)
    if block is None or block.der is None:
        raise KeyFileError(where, "not a valid PEM public key")
    der = block.der
    if block.label != "PUBLIC KEY":
        legacy = LEGACY_LABELS.get(block.label.removesuffix(" PUBLIC KEY"))
        if legacy is None:
            raise KeyFileError(where, "not a valid PEM public key")
        raise KeyFileError(where, f"holds {legacy}, expected Ed25519")
    if len(der) == len(SPKI_PREFIX) + PUBLIC_KEY_BYTES and der.startswith(SPKI_PREFIX):
        try:
            return PublicKey(der[len(SPKI_PREFIX) :])
        except ValueError:
            raise KeyFileError(where, "not a valid Ed25519 public key") from None
    oid = algorithm_oid(der, private=False)
    if oid is None or oid == ED25519_OID:
        raise KeyFileError(where, "not a valid PEM public key")
    raise KeyFileError(where, f"holds {other_algorithm(oid)}, expected Ed25519")
