"""Secrets out of anything that leaves the gateway in a support bundle.

Config values under a key named like a secret (password, secret, key, token)
are replaced, except file paths (`key_file = "/etc/…"`: where a secret lives is
useful to know, and the file itself is never read). Text (logs, errors) loses
every PEM private-key block.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***redacted***"
SECRET_WORDS = ("password", "secret", "key", "token", "credential")
PATH_KEYS = frozenset({"signing_key", "session_keys"})
_PEM_PRIVATE = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(-----END \1PRIVATE KEY-----|\Z)", re.DOTALL
)
_PATH = re.compile(r"^/[^\s]{0,4095}$")


def is_secret_name(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in SECRET_WORDS)


def redact(node: Any, key: str = "") -> Any:
    """A copy of a parsed config with secret values replaced."""
    if isinstance(node, dict):
        return {k: redact(v, str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [redact(v, key) for v in node]
    if isinstance(node, str):
        if is_secret_name(key) and not _is_path(key, node):
            return REDACTED
        return scrub(node)
    if is_secret_name(key):
        return REDACTED
    return node


def _is_path(key: str, value: str) -> bool:
    named_as_file = key.endswith(("_file", "_dir", "_path")) or key in PATH_KEYS
    return named_as_file and bool(_PATH.match(value)) and "PRIVATE KEY" not in value


def scrub(text: str) -> str:
    """`text` without any PEM private-key block (a pasted key in a log stays out)."""
    if "PRIVATE KEY" not in text:
        return text
    return _PEM_PRIVATE.sub("[private key removed]", text)
