"""Key files: created 0600 from the first byte, refused when others can read them;
public keys in every accepted form; key ids."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cityedge.protocol.key_files import create_key, load_public_key, load_signing_key, load_trust
from cityedge.protocol.keys import KeyFileError, SigningKey


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most careless umask there is: the key must still come out 0600."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_created_key_is_0600_in_a_0700_dir_and_loads_back(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "keys" / "nested" / "gateway.key"
    key = create_key(path)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = load_signing_key(path)
    assert loaded.key_id == key.key_id
    assert loaded.path == path
    signature = loaded.sign(b"lamppost-03")
    assert key.public_key.verify(signature, b"lamppost-03")  # the halves match


def test_create_refuses_to_clobber_unless_told(tmp_path: Path) -> None:
    path = tmp_path / "gateway.key"
    first = create_key(path)
    with pytest.raises(KeyFileError, match=r"already exists.*--force"):
        create_key(path)
    assert load_signing_key(path).key_id == first.key_id  # untouched
    second = create_key(path, overwrite=True)
    assert second.key_id != first.key_id
    assert load_signing_key(path).key_id == second.key_id
    assert mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["gateway.key"]  # no temp file left


@pytest.mark.parametrize("loose", [0o644, 0o640, 0o604, 0o660, 0o600 | 0o002])
def test_group_or_other_readable_key_is_refused(tmp_path: Path, loose: int) -> None:
    path = tmp_path / "gateway.key"
    create_key(path)
    path.chmod(loose)
    with pytest.raises(KeyFileError) as err:
        load_signing_key(path)
    text = str(err.value)
    assert str(path) in text
    assert f"{loose:04o}" in text
    assert f"chmod 600 {path}" in text


def test_missing_key_file_says_how_to_create_one(tmp_path: Path) -> None:
    path = tmp_path / "nope.key"
    with pytest.raises(KeyFileError, match=r"no such key file.*cityedge keys init --out"):
        load_signing_key(path)


def write_private(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def test_key_files_that_are_not_ours_are_refused_clearly(tmp_path: Path) -> None:
    ours = SigningKey.generate()
    cases = {
        "garbage.key": (b"hello, lamppost\n", "not a PEM private key"),
        "public.key": (ours.public_key.pem().encode(), "public key, not a private key"),
        "text.key": (ours.public_text().encode(), "public key"),
        "ec.key": (
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            "expected an Ed25519 key",
        ),
        "encrypted.key": (
            Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            ),
            "encrypted",
        ),
    }
    for name, (data, problem) in cases.items():
        path = write_private(tmp_path / name, data)
        with pytest.raises(KeyFileError, match=problem) as err:
            load_signing_key(path)
        assert str(path) in str(err.value)
    directory = tmp_path / "dir.key"
    directory.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_signing_key(directory)


def test_key_id_is_the_first_16_hex_of_sha256_of_the_raw_public_key() -> None:
    key = SigningKey.from_seed(bytes(32))
    raw = key.public_key.raw
    assert len(raw) == 32
    assert key.key_id == key.public_key.key_id == hashlib.sha256(raw).hexdigest()[:16]


def test_repr_never_shows_the_secret() -> None:
    key = SigningKey.from_seed(bytes(range(32)))
    assert "private" not in repr(key).lower()
    assert bytes(range(32)).hex() not in repr(key)
    assert key.key_id in repr(key)


def test_public_key_in_every_accepted_form(tmp_path: Path) -> None:
    key = SigningKey.generate()
    text = key.public_text()
    assert text.startswith("ed25519:") and len(text) == 8 + 64
    pem = key.public_key.pem()
    (tmp_path / "a.pub").write_text(pem)
    (tmp_path / "b.pub").write_text(text + "\n")
    forms: list[Path | str] = [
        text,
        text.removeprefix("ed25519:").upper(),
        f"  {text}\n",
        pem,
        tmp_path / "a.pub",
        str(tmp_path / "b.pub"),
        Path(text),  # a config's trust list hands key text over as a Path
        tmp_path / text,  # …even one made "absolute" against the config's directory
    ]
    for form in forms:
        assert load_public_key(form).key_id == key.key_id, form


def test_bad_public_keys_name_the_source(tmp_path: Path) -> None:
    private_pem = SigningKey.generate().private_pem().decode()
    with pytest.raises(KeyFileError, match="is a private key; never hand it out"):
        load_public_key(private_pem)
    with pytest.raises(KeyFileError, match="no such file"):
        load_public_key(tmp_path / "missing.pub")
    (tmp_path / "junk.pub").write_text("not a key at all")
    with pytest.raises(KeyFileError, match=r"junk\.pub: not a public key"):
        load_public_key(tmp_path / "junk.pub")
    with pytest.raises(KeyFileError, match="not a valid PEM public key"):
        load_public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(KeyFileError, match="expected Ed25519"):
        load_public_key(ec_pem)


def test_trust_maps_key_ids_and_keeps_a_repeated_key_once() -> None:
    a, b = SigningKey.generate(), SigningKey.generate()
    trusted = load_trust([a.public_text(), b.public_text(), a.public_key.pem()])
    assert sorted(trusted) == sorted([a.key_id, b.key_id])
    assert load_trust([]) == {}
