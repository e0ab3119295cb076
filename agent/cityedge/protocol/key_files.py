"""Key files on disk: private keys written 0600 from the first byte, read only
when no one else may read them; public keys and trust lists read from files
(or given as text where a file name is expected).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from cityedge.protocol.keys import (
    KeyFileError,
    PublicKey,
    SigningKey,
    looks_like_key_text,
    parse_private_pem,
    parse_public_text,
)
from cityedge.sdk.atomic import fsync_directory, write_atomic

MAX_KEY_FILE_BYTES = 64 * 1024  # a PEM key is < 200 bytes; anything huge is not a key

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
            fsync_directory(path.parent)  # the new entry survives a power cut too
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
    return parse_private_pem(data, path)


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
