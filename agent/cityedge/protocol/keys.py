"""Ed25519 keys: a signing key on disk, and the public keys a party trusts.

A gateway signs everything it sends with its own key; the command post signs
commands with one of its keys. Private keys are PEM PKCS#8 files that only
their owner may read; public keys travel as text, either PEM or the one-line
form `ed25519:<64 hex digits>` that fits in a TOML list or a command line.

A key is named by its key id: the first 16 hex digits of SHA-256 over the raw
32-byte public key (docs/protocol.md). Envelopes carry the id, never the key.

The arithmetic is libsodium's (PyNaCl), not `cryptography`'s: the daemon needs
nothing but Ed25519, and `cryptography` would cost it a second OpenSSL (6.6 MB
resident against 1.2). PyNaCl has no PEM, so the two fixed RFC 8410 encodings
an Ed25519 key has are written and read here, byte for byte.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import nacl.bindings
import nacl.signing
from nacl.exceptions import BadSignatureError

from cityedge.sdk.atomic import write_atomic

PUBLIC_TEXT_PREFIX = "ed25519:"
KEY_ID_LENGTH = 16  # hex digits: 64 bits, plenty to tell a city's keys apart
MAX_KEY_FILE_BYTES = 64 * 1024  # a PEM key is < 200 bytes; anything huge is not a key
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
KEY_ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")

# RFC 8410: an Ed25519 key has exactly one DER encoding of each kind, a fixed
# prefix and then the key. PKCS#8 v1: SEQUENCE { INTEGER 0, SEQUENCE { OID
# 1.3.101.112 }, OCTET STRING { OCTET STRING <32-byte seed> } }.
_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
# OneAsymmetricKey (PKCS#8 v2): version 1, the seed, then [1] the public key.
_PKCS8_V2_PREFIX = bytes.fromhex("3051020101300506032b657004220420")
_PKCS8_V2_PUBLIC = bytes.fromhex("812100")
# SubjectPublicKeyInfo: SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING <32 bytes> }.
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_SEED_BYTES = 32

# Only to name what a key file holds instead of Ed25519 (DER contents of the OID).
_ED25519_OID = bytes.fromhex("2b6570")
_OTHER_ALGORITHMS = {
    bytes.fromhex("2a864886f70d010101"): "an RSA key",
    bytes.fromhex("2a864886f70d01010a"): "an RSA-PSS key",
    bytes.fromhex("2a8648ce3d0201"): "an EC key",
    bytes.fromhex("2a8648ce380401"): "a DSA key",
    bytes.fromhex("2b656e"): "an X25519 key",
    bytes.fromhex("2b656f"): "an X448 key",
    bytes.fromhex("2b6571"): "an Ed448 key",
}
# Pre-PKCS#8 OpenSSL labels, `-----BEGIN RSA PRIVATE KEY-----` and the like.
_LEGACY_LABELS = {"RSA": "an RSA key", "EC": "an EC key", "DSA": "a DSA key"}
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_PEM_COLUMNS = 64


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
        return _pem("PUBLIC KEY", _SPKI_PREFIX + self._raw)

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
        return _pem("PRIVATE KEY", _PKCS8_PREFIX + bytes(self._private)).encode("ascii")

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        return f"SigningKey(key_id={self.key_id!r}{where})"


# --- PEM and DER, as far as Ed25519 keys need them ------------------------------------------


class _PemBlock(NamedTuple):
    label: str  # "PRIVATE KEY", "PUBLIC KEY", "ENCRYPTED PRIVATE KEY", …
    headers: bytes  # RFC 1421 headers such as "Proc-Type: 4,ENCRYPTED"; usually empty
    der: bytes | None  # None when the body is not valid base64


def _pem(label: str, der: bytes) -> str:
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + _PEM_COLUMNS] for i in range(0, len(body), _PEM_COLUMNS)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def _read_pem(data: bytes) -> _PemBlock | None:
    """The first PEM block in `data` (text around it is allowed, RFC 7468), or None."""
    block = _PEM_BLOCK.search(data)
    if block is None:
        return None
    lines = [line.strip() for line in block.group(2).splitlines()]
    headers = b"\n".join(line for line in lines if b":" in line)
    body = b"".join(line for line in lines if b":" not in line)
    try:
        der: bytes | None = base64.b64decode(body, validate=True)
    except binascii.Error:
        der = None
    return _PemBlock(block.group(1).decode("ascii"), headers, der)


def _der_element(der: bytes, pos: int) -> tuple[int, int, int]:
    """The DER element at `pos`: (tag, start of contents, end of contents)."""
    if pos + 2 > len(der):
        raise ValueError("truncated DER")
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4 or pos + count > len(der):
            raise ValueError("bad DER length")
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    if pos + length > len(der):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _algorithm_oid(der: bytes, *, private: bool) -> bytes | None:
    """The algorithm OID of a PKCS#8 (`private`) or SubjectPublicKeyInfo structure, or
    None if `der` is neither: enough to say what a key is when it is not ours."""
    try:
        tag, pos, end = _der_element(der, 0)
        if tag != 0x30 or end != len(der):
            return None
        if private:  # the version INTEGER comes first
            tag, _, pos = _der_element(der, pos)
            if tag != 0x02:
                return None
        tag, pos, _ = _der_element(der, pos)  # AlgorithmIdentifier SEQUENCE
        if tag != 0x30:
            return None
        tag, pos, end = _der_element(der, pos)
    except ValueError:
        return None
    return der[pos:end] if tag == 0x06 else None


def _other_algorithm(oid: bytes) -> str:
    return _OTHER_ALGORITHMS.get(oid, "a key of another algorithm")


def _private_from_der(der: bytes, path: Path) -> nacl.signing.SigningKey:
    if len(der) == len(_PKCS8_PREFIX) + _SEED_BYTES and der.startswith(_PKCS8_PREFIX):
        return nacl.signing.SigningKey(der[len(_PKCS8_PREFIX) :])
    seed_end = len(_PKCS8_V2_PREFIX) + _SEED_BYTES
    if (
        len(der) == seed_end + len(_PKCS8_V2_PUBLIC) + PUBLIC_KEY_BYTES
        and der.startswith(_PKCS8_V2_PREFIX)
        and der[seed_end:].startswith(_PKCS8_V2_PUBLIC)
    ):
        private = nacl.signing.SigningKey(der[len(_PKCS8_V2_PREFIX) : seed_end])
        if bytes(private.verify_key) != der[-PUBLIC_KEY_BYTES:]:
            raise KeyFileError(path, "the public key in the file does not match its private key")
        return private
    oid = _algorithm_oid(der, private=True)
    if oid is None:
        raise KeyFileError(
            path,
            "not a PEM private key",
            "expected '-----BEGIN PRIVATE KEY-----' as written by `cityedge keys init`",
        )
    if oid == _ED25519_OID:  # attributes or another layout RFC 8410 does not write
        raise KeyFileError(
            path,
            "an Ed25519 private key in a form cityedge does not read",
            "write it as plain PKCS#8, e.g. `openssl pkey -in KEY -out NEW`",
        )
    raise KeyFileError(path, f"holds {_other_algorithm(oid)}, expected an Ed25519 key")


# --- private key files ---------------------------------------------------------------


def create_key(path: Path, *, overwrite: bool = False) -> SigningKey:
    """Generate a key and write it to `path` as PEM PKCS#8, mode 0600 from the first byte.

    The file is created with O_EXCL, so an existing key is never clobbered by
    accident; with `overwrite` the new key is written to a temporary file in
    the same directory and renamed over the old one (a crash leaves one or the
    other, never half a key). A parent directory we create is mode 0700.
    """
    return save_key(path, SigningKey.generate(), overwrite=overwrite)


def save_key(path: Path, key: SigningKey, *, overwrite: bool = False) -> SigningKey:
    """Write `key` as `create_key` does (0600 from the first byte; atomic with `overwrite`)."""
    pem = key.private_pem()
    _make_parent(path)
    if not overwrite:
        try:
            _write_exclusive(path, pem)
        except FileExistsError:
            raise KeyFileError(
                path, "a key file already exists", "keep it, or pass --force to replace it"
            ) from None
        except OSError as exc:
            raise KeyFileError(path, f"cannot write the key file ({exc.strerror})") from None
    else:
        try:
            write_atomic(path, pem, mode=0o600, exact_mode=True)
        except OSError as exc:
            raise KeyFileError(path, f"cannot write the key file ({exc.strerror})") from None
    key.path = path
    return key


def _make_parent(path: Path) -> None:
    parent = path.parent
    if parent.exists():
        return
    try:
        parent.mkdir(mode=0o700, parents=True)
        parent.chmod(0o700)  # mkdir's mode is filtered by the umask; be exact
    except OSError as exc:
        raise KeyFileError(parent, f"cannot create the key directory ({exc.strerror})") from None


def _write_exclusive(path: Path, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a umask can only remove bits; make sure the owner can read
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    os.close(fd)


def load_signing_key(path: Path) -> SigningKey:
    """Read a private key file; refuse one that group or others may read or write."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KeyFileError(
            path, "no such key file", f"create one with `cityedge keys init --out {path}`"
        ) from None
    except PermissionError:
        raise KeyFileError(
            path, "cannot read the key file (permission denied)", "run as the key's owner"
        ) from None
    except OSError as exc:
        raise KeyFileError(path, f"cannot open the key file ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(path, "is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise KeyFileError(
                path,
                f"mode {mode:04o} lets group or others at the private key",
                f"run `chmod 600 {path}` (and check who could have copied it)",
            )
        if st.st_size > MAX_KEY_FILE_BYTES:
            raise KeyFileError(path, f"is {st.st_size} bytes: too large to be a key file")
        data = os.read(fd, MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyFileError(path, f"cannot read the key file ({exc.strerror})") from None
    finally:
        os.close(fd)
    return SigningKey(_parse_private_pem(data, path), path)


def _parse_private_pem(data: bytes, path: Path) -> nacl.signing.SigningKey:
    if b"PUBLIC KEY" in data and b"PRIVATE KEY" not in data:
        raise KeyFileError(path, "holds a public key, not a private key")
    if data.lstrip().startswith(PUBLIC_TEXT_PREFIX.encode()):
        raise KeyFileError(path, "holds a public key (ed25519:…), not a private key")
    block = _read_pem(data)
    if block is not None and (
        block.label == "ENCRYPTED PRIVATE KEY" or b"ENCRYPTED" in block.headers
    ):
        raise KeyFileError(
            path, "the key is encrypted; cityedge keys are stored unencrypted, mode 0600"
        )
    if block is not None and block.der is not None:
        if block.label == "PRIVATE KEY":
            return _private_from_der(block.der, path)
        legacy = _LEGACY_LABELS.get(block.label.removesuffix(" PRIVATE KEY"))
        if legacy is not None:
            raise KeyFileError(path, f"holds {legacy}, expected an Ed25519 key")
    raise KeyFileError(
        path,
        "not a PEM private key",
        "expected '-----BEGIN PRIVATE KEY-----' as written by `cityedge keys init`",
    )


# --- public keys and trust ---------------------------------------------------------------


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
    block = _read_pem(data)
    if block is None or block.der is None:
        raise KeyFileError(where, "not a valid PEM public key")
    der = block.der
    if block.label != "PUBLIC KEY":
        legacy = _LEGACY_LABELS.get(block.label.removesuffix(" PUBLIC KEY"))
        if legacy is None:
            raise KeyFileError(where, "not a valid PEM public key")
        raise KeyFileError(where, f"holds {legacy}, expected Ed25519")
    if len(der) == len(_SPKI_PREFIX) + PUBLIC_KEY_BYTES and der.startswith(_SPKI_PREFIX):
        try:
            return PublicKey(der[len(_SPKI_PREFIX) :])
        except ValueError:
            raise KeyFileError(where, "not a valid Ed25519 public key") from None
    oid = _algorithm_oid(der, private=False)
    if oid is None or oid == _ED25519_OID:
        raise KeyFileError(where, "not a valid PEM public key")
    raise KeyFileError(where, f"holds {_other_algorithm(oid)}, expected Ed25519")


def load_public_key(source: Path | str) -> PublicKey:
    """A public key from a file (PEM or `ed25519:<hex>`) or from the text itself."""
    # Text first: a config's `trust = ["ed25519:…"]` arrives here as a Path.
    if looks_like_key_text(str(source)):
        shown = str(source).strip()
        shown = shown if len(shown) <= 40 else shown[:37] + "…"
        return parse_public_text(str(source), f"key {shown!r}")
    path = Path(source)
    try:
        size = path.stat().st_size
        if size > MAX_KEY_FILE_BYTES:
            raise KeyFileError(path, f"is {size} bytes: too large to be a key file")
        text = path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        if looks_like_key_text(path.name):
            # A config loader that made `ed25519:<hex>` "absolute" against its directory.
            return parse_public_text(path.name, f"key {path.name[:37]!r}")
        raise KeyFileError(
            path, "no such file (nor a key: expected 'ed25519:<hex>' or PEM text)"
        ) from None
    except OSError as exc:
        raise KeyFileError(path, f"cannot read the key file ({exc.strerror})") from None
    return parse_public_text(text, path)


def load_trust(sources: Sequence[Path | str]) -> dict[str, PublicKey]:
    """Trusted public keys by key id. The same key listed twice is kept once."""
    trusted: dict[str, PublicKey] = {}
    for source in sources:
        public = load_public_key(source)
        trusted[public.key_id] = public
    return trusted
