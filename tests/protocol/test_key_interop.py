"""Our Ed25519 (PyNaCl plus hand-written RFC 8410 PEM) against `cryptography`'s: the same
key files both ways, the same signatures, and the same refusals for keys that are not
plain Ed25519. `cryptography` is here only as the reference; the agent does not use it."""

from __future__ import annotations

import base64
import copy
import hashlib
import pickle
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.protocol.key_files import load_public_key, load_signing_key, save_key
from cityedge.protocol.keys import KeyFileError, PublicKey, SigningKey, parse_public_text

PEM = serialization.Encoding.PEM
PKCS8 = serialization.PrivateFormat.PKCS8
SPKI = serialization.PublicFormat.SubjectPublicKeyInfo
PLAIN = serialization.NoEncryption()

seeds = st.binary(min_size=32, max_size=32)
messages = st.binary(max_size=512)


def write_private(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def their_public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(PEM, SPKI).decode("ascii")


@settings(max_examples=50, deadline=None)
@given(seed=seeds, message=messages)
def test_our_key_file_is_theirs_byte_for_byte(
    tmp_path_factory: pytest.TempPathFactory, seed: bytes, message: bytes
) -> None:
    path = tmp_path_factory.mktemp("ours") / "gateway.key"
    save_key(path, SigningKey.from_seed(seed))
    ours = load_signing_key(path)
    theirs = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(theirs, Ed25519PrivateKey)
    assert theirs.public_key().public_bytes_raw() == ours.public_key.raw
    assert path.read_bytes() == theirs.private_bytes(PEM, PKCS8, PLAIN)
    assert ours.public_key.pem() == their_public_pem(theirs)
    assert ours.sign(message) == theirs.sign(message)  # Ed25519 is deterministic


@settings(max_examples=50, deadline=None)
@given(seed=seeds)
def test_their_key_files_load_here(tmp_path_factory: pytest.TempPathFactory, seed: bytes) -> None:
    theirs = Ed25519PrivateKey.from_private_bytes(seed)
    path = write_private(
        tmp_path_factory.mktemp("theirs") / "gateway.key", theirs.private_bytes(PEM, PKCS8, PLAIN)
    )
    raw = theirs.public_key().public_bytes_raw()
    ours = load_signing_key(path)
    assert ours.public_key.raw == raw
    assert ours.key_id == hashlib.sha256(raw).hexdigest()[:16]
    public_file = path.with_name("gateway.pub")
    public_file.write_text(their_public_pem(theirs))
    assert parse_public_text(their_public_pem(theirs), "test") == ours.public_key
    assert load_public_key(public_file) == ours.public_key


@settings(max_examples=50, deadline=None)
@given(seed=seeds, message=messages)
def test_signatures_verify_both_ways(seed: bytes, message: bytes) -> None:
    ours, theirs = SigningKey.from_seed(seed), Ed25519PrivateKey.from_private_bytes(seed)
    assert ours.public_key.verify(theirs.sign(message), message)
    theirs.public_key().verify(ours.sign(message), message)  # raises if it does not


@settings(max_examples=50, deadline=None)
@given(seed=seeds, message=messages.filter(bool), data=st.data())
def test_a_flipped_bit_is_refused_by_both(seed: bytes, message: bytes, data: st.DataObject) -> None:
    key = SigningKey.from_seed(seed)
    signed = bytearray(key.sign(message) + message)
    bit = data.draw(st.integers(0, len(signed) * 8 - 1), label="bit")
    signed[bit // 8] ^= 1 << bit % 8
    signature, changed = bytes(signed[:64]), bytes(signed[64:])
    assert not key.public_key.verify(signature, changed)
    with pytest.raises(InvalidSignature):
        Ed25519PublicKey.from_public_bytes(key.public_key.raw).verify(signature, changed)


def test_a_signature_of_the_wrong_length_is_false_not_an_error() -> None:
    key = SigningKey.from_seed(bytes(range(32)))
    signature = key.sign(b"lamppost-03")
    for wrong in (b"", signature[:-1], signature + b"\x00"):
        assert key.public_key.verify(wrong, b"lamppost-03") is False


def test_public_keys_libsodium_rejects_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        PublicKey(bytes(31))
    small_order = bytes(32)  # the point y = 0, of order 4: no signing key has it
    with pytest.raises(ValueError, match="not a valid Ed25519 point"):
        PublicKey(small_order)
    with pytest.raises(KeyFileError, match="not a valid Ed25519 public key"):
        parse_public_text("ed25519:" + small_order.hex(), "trust[0]")
    spki = bytes.fromhex("302a300506032b6570032100") + small_order
    with pytest.raises(KeyFileError, match="not a valid Ed25519 public key"):
        parse_public_text(pem_of("PUBLIC KEY", spki).decode(), "trust[0]")


def test_public_key_is_a_value() -> None:
    key = SigningKey.from_seed(bytes(range(32))).public_key
    same = PublicKey(key.raw)
    assert same == key and hash(same) == hash(key) and same is not key
    assert key != SigningKey.from_seed(bytes(32)).public_key
    assert copy.deepcopy(key) == key == pickle.loads(pickle.dumps(key))
    assert repr(key) == f"PublicKey(key_id={key.key_id!r})"
    with pytest.raises(AttributeError):
        key._raw = bytes(32)


def test_other_algorithms_are_named_and_refused(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    legacy = serialization.PrivateFormat.TraditionalOpenSSL  # -----BEGIN RSA PRIVATE KEY-----
    private = [
        ("an RSA key", rsa_key.private_bytes(PEM, PKCS8, PLAIN)),
        ("an RSA key", rsa_key.private_bytes(PEM, legacy, PLAIN)),
        ("an EC key", ec_key.private_bytes(PEM, PKCS8, PLAIN)),
        ("an X25519 key", x25519.X25519PrivateKey.generate().private_bytes(PEM, PKCS8, PLAIN)),
        ("an Ed448 key", ed448.Ed448PrivateKey.generate().private_bytes(PEM, PKCS8, PLAIN)),
    ]
    for i, (what, data) in enumerate(private):
        path = write_private(tmp_path / f"{i}.key", data)
        with pytest.raises(KeyFileError, match=f"holds {what}, expected an Ed25519 key"):
            load_signing_key(path)
    public = [
        ("an RSA key", rsa_key.public_key().public_bytes(PEM, SPKI)),
        ("an RSA key", rsa_key.public_key().public_bytes(PEM, serialization.PublicFormat.PKCS1)),
        ("an X25519 key", x25519.X25519PrivateKey.generate().public_key().public_bytes(PEM, SPKI)),
    ]
    for what, data in public:
        with pytest.raises(KeyFileError, match=f"holds {what}, expected Ed25519"):
            parse_public_text(data.decode(), "trust[0]")


def test_encrypted_keys_are_refused_as_encrypted(tmp_path: Path) -> None:
    secret = serialization.BestAvailableEncryption(b"lamppost")
    pkcs8 = Ed25519PrivateKey.generate().private_bytes(PEM, PKCS8, secret)
    legacy = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        PEM, serialization.PrivateFormat.TraditionalOpenSSL, secret
    )  # Proc-Type: 4,ENCRYPTED
    for name, data in {"pkcs8.key": pkcs8, "legacy.key": legacy}.items():
        path = write_private(tmp_path / name, data)
        with pytest.raises(KeyFileError, match="the key is encrypted; cityedge keys are stored"):
            load_signing_key(path)


def test_pkcs8_v2_with_the_public_key_loads_when_it_matches(tmp_path: Path) -> None:
    theirs = Ed25519PrivateKey.generate()
    seed = theirs.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, PLAIN)
    raw = theirs.public_key().public_bytes_raw()
    # RFC 8410 §7: OneAsymmetricKey, version 1, [1] publicKey after the private key.
    # Built by hand: neither `cryptography` 50 nor OpenSSL 3 reads or writes this form.
    prefix = bytes.fromhex("3051020101300506032b657004220420")
    path = write_private(
        tmp_path / "v2.key", pem_of("PRIVATE KEY", prefix + seed + b"\x81\x21\x00" + raw)
    )
    assert load_signing_key(path).public_key.raw == raw
    other = SigningKey.generate().public_key.raw
    write_private(path, pem_of("PRIVATE KEY", prefix + seed + b"\x81\x21\x00" + other))
    with pytest.raises(KeyFileError, match="does not match its private key"):
        load_signing_key(path)


def test_broken_private_pem_is_not_a_pem_private_key(tmp_path: Path) -> None:
    good = SigningKey.from_seed(bytes(32)).private_pem()
    cases = {
        "truncated.key": pem_of("PRIVATE KEY", bytes.fromhex("302e020100300506032b657004220420")),
        "badbase64.key": good.replace(b"MC4", b"M*4"),
        "noend.key": good.split(b"-----END")[0],
        "openssh.key": good.replace(b" PRIVATE KEY", b" OPENSSH PRIVATE KEY"),
    }
    for name, data in cases.items():
        path = write_private(tmp_path / name, data)
        with pytest.raises(KeyFileError, match="not a PEM private key"):
            load_signing_key(path)
    # Explanatory text around the block is allowed (RFC 7468), as `openssl` writes it.
    path = write_private(tmp_path / "noted.key", b"gateway gw-17\n" + good + b"\n# end\n")
    assert load_signing_key(path).key_id == SigningKey.from_seed(bytes(32)).key_id


def pem_of(label: str, der: bytes) -> bytes:
    """PEM written by hand, for encodings no library would write."""
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n".encode()
