"""Which gateway keys the command post trusts, and which gateway each key belongs to.

On a command line a trusted key is `KEY` or `GATEWAY=KEY`, where KEY is a file
(PEM or `ed25519:<hex>`) or the key text itself. Binding a key to its gateway
means a stolen key of one street cabinet cannot speak for another.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cityedge.protocol.key_files import load_public_key
from cityedge.protocol.keys import KeyFileError, PublicKey
from cityedge.protocol.topics import NAME_PATTERN

_BOUND = re.compile(r"^([^=]+)=(.+)$", re.DOTALL)  # GATEWAY=KEY; GATEWAY a topic-safe name


@dataclass(slots=True)
class Trust:
    keys: dict[str, PublicKey] = field(default_factory=dict)
    bindings: dict[str, str] = field(default_factory=dict)  # key id -> gateway id


def load_gateway_trust(specs: Sequence[str]) -> Trust:
    """Parse `KEY` / `GATEWAY=KEY` items; KeyFileError names the item that is wrong."""
    trust = Trust()
    for spec in specs:
        gateway: str | None = None
        source = spec
        bound = _BOUND.match(spec)
        # a file name may contain '=' too
        if bound and NAME_PATTERN.fullmatch(bound.group(1)) and not Path(spec).exists():
            gateway, source = bound.group(1), bound.group(2)
        public = load_public_key(source)
        kid = public.key_id
        if gateway is not None:
            previous = trust.bindings.get(kid)
            if previous is not None and previous != gateway:
                raise KeyFileError(
                    spec, f"key {kid} is already bound to gateway {previous!r}",
                    "each gateway has its own key",
                )  # fmt: skip
            trust.bindings[kid] = gateway
        trust.keys[kid] = public
    return trust
