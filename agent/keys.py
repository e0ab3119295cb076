"""Ed25519 keys: a signing key on disk, and the public keys a party trusts.

A gateway signs everything it sends with its own key; the command post signs
commands with one of its keys. Private keys are PEM PKCS#8 files that only
their owner may read; public keys travel as text, either PEM or the one-line
form `ed25519:<64 hex digits>` that fits in a TOML list or a command line.

A key is named by its key id: the first 16 hex digits of SHA-256 over the raw
32-byte public key (docs/protocol.md). Envelopes carry the id, never the key.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

PUBLIC_TEXT_PREFIX = "ed25519:"
KEY_ID_LENGTH = 16  # hex digits: 64 bits, plenty to tell a city's keys apart
MAX_KEY_FILE_BYTES = 64 * 1024  # a PEM key is < 200 bytes; anything huge is not a key

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


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 over the raw 32-byte public key."""
    return hashlib.sha256(raw_public_bytes(public_key)).hexdigest()[:KEY_ID_LENGTH]


def raw_public_bytes(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_text(public_key: Ed25519PublicKey) -> str:
    """The one-line form: `ed25519:<64 lowercase hex digits>`."""
    return PUBLIC_TEXT_PREFIX + raw_public_bytes(public_key).hex()


def public_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


class SigningKey:
    """A private Ed25519 key and its public half. Never prints the secret."""

    __slots__ = ("_private", "key_id", "path", "public_key")

    def __init__(self, private_key: Ed25519PrivateKey, path: Path | None = None) -> None:
        self._private = private_key
        self.public_key: Ed25519PublicKey = private_key.public_key()
        self.key_id: str = key_id(self.public_key)
        self.path = path

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """A key from its 32-byte seed: for test vectors and tests, where bytes must be fixed."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def public_text(self) -> str:
        return public_text(self.public_key)

    def private_pem(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        return f"SigningKey(key_id={self.key_id!r}{where})"


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
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            _write_exclusive(tmp, pem)
            tmp.replace(path)
            _fsync_dir(path.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
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


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
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


def _parse_private_pem(data: bytes, path: Path) -> Ed25519PrivateKey:
    if b"PUBLIC KEY" in data and b"PRIVATE KEY" not in data:
        raise KeyFileError(path, "holds a public key, not a private key")
    if data.lstrip().startswith(PUBLIC_TEXT_PREFIX.encode()):
        raise KeyFileError(path, "holds a public key (ed25519:…), not a private key")
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyFileError(
            path, "the key is encrypted; cityedge keys are stored unencrypted, mode 0600"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(
            path,
            "not a PEM private key",
            "expected '-----BEGIN PRIVATE KEY-----' as written by `cityedge keys init`",
        ) from None
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError(path, f"holds a {type(private).__name__}, expected an Ed25519 key")
    return private


# --- public keys and trust ---------------------------------------------------------------


def looks_like_key_text(text: str) -> bool:
    """True for the forms of a key given inline rather than as a file name."""
    stripped = text.strip()
    return (
        stripped.startswith((PUBLIC_TEXT_PREFIX, "-----BEGIN"))
        or _HEX64.match(stripped) is not None
    )


def parse_public_text(text: str, where: str | Path) -> Ed25519PublicKey:
    """PEM (SubjectPublicKeyInfo), `ed25519:<hex>` or 64 bare hex digits."""
    stripped = text.strip()
    if stripped.startswith("-----BEGIN"):
        if "PRIVATE KEY" in stripped:
            raise KeyFileError(
                where,
                "is a private key; never hand it out",
                "give its public half instead: `cityedge keys show`",
            )
        try:
            public = serialization.load_pem_public_key(stripped.encode("ascii", "replace"))
        except (ValueError, UnsupportedAlgorithm):
            raise KeyFileError(where, "not a valid PEM public key") from None
        if not isinstance(public, Ed25519PublicKey):
            raise KeyFileError(where, f"holds a {type(public).__name__}, expected Ed25519")
        return public
    hex_part = stripped.removeprefix(PUBLIC_TEXT_PREFIX)
    if _HEX64.match(hex_part) is None:
        raise KeyFileError(
            where,
            "not a public key",
            "expected PEM ('-----BEGIN PUBLIC KEY-----'), 'ed25519:<64 hex digits>' "
            "or 64 hex digits",
        )
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(hex_part))
    except ValueError:
        raise KeyFileError(where, "not a valid Ed25519 public key") from None


def load_public_key(source: Path | str) -> Ed25519PublicKey:
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


def load_trust(sources: Sequence[Path | str]) -> dict[str, Ed25519PublicKey]:
    """Trusted public keys by key id. The same key listed twice is kept once."""
    trusted: dict[str, Ed25519PublicKey] = {}
    for source in sources:
        public = load_public_key(source)
        trusted[key_id(public)] = public
    return trusted
