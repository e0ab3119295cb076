"""Where the gateway's signing key is: systemd's credential, else the configured file.

Shared by the runtime (which loads the key) and the key check of `cityedge check`
(which looks at the same file the agent would load), so it lives apart from both.
"""

from __future__ import annotations

import os
from pathlib import Path


def gateway_key_path(configured: Path) -> Path:
    """The key systemd passed as a credential (LoadCredential=gateway.key:…) wins."""
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / "gateway.key").is_file():
        return Path(credentials) / "gateway.key"
    return configured
