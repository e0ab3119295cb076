"""RFC 8410 encodings of Ed25519 keys, as bytes: the fixed DER forms, PEM armour,
and enough DER to say what a key of another algorithm is.

PyNaCl has no PEM, and an Ed25519 key has exactly one DER encoding of each
kind, so these are written and read here, byte for byte. Nothing here knows a
key object: `cityedge.protocol.keys` builds keys from what this returns.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import NamedTuple

# RFC 8410: an Ed25519 key has exactly one DER encoding of each kind, a fixed
# prefix and then the key. PKCS#8 v1: SEQUENCE { INTEGER 0, SEQUENCE { OID
# 1.3.101.112 }, OCTET STRING { OCTET STRING <32-byte seed> } }.
PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
# OneAsymmetricKey (PKCS#8 v2): version 1, the seed, then [1] the public key.
PKCS8_V2_PREFIX = bytes.fromhex("3051020101300506032b657004220420")
PKCS8_V2_PUBLIC = bytes.fromhex("812100")
# SubjectPublicKeyInfo: SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING <32 bytes> }.
SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
SEED_BYTES = 32

# Only to name what a key file holds instead of Ed25519 (DER contents of the OID).
ED25519_OID = bytes.fromhex("2b6570")
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
LEGACY_LABELS = {"RSA": "an RSA key", "EC": "an EC key", "DSA": "a DSA key"}
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_PEM_COLUMNS = 64


class PemBlock(NamedTuple):
    label: str  # "PRIVATE KEY", "PUBLIC KEY", "ENCRYPTED PRIVATE KEY", …
    headers: bytes  # RFC 1421 headers such as "Proc-Type: 4,ENCRYPTED"; usually empty
    der: bytes | None  # None when the body is not valid base64


def pem_text(label: str, der: bytes) -> str:
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + _PEM_COLUMNS] for i in range(0, len(body), _PEM_COLUMNS)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def read_pem(data: bytes) -> PemBlock | None:
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
    return PemBlock(block.group(1).decode("ascii"), headers, der)


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


def algorithm_oid(der: bytes, *, private: bool) -> bytes | None:
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


def other_algorithm(oid: bytes) -> str:
    return _OTHER_ALGORITHMS.get(oid, "a key of another algorithm")
