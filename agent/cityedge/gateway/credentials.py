"""Where the gateway's signing key is: systemd's credential, else the configured file,
else where the shipped unit keeps it.

Shared by the runtime (which loads the key), the key check of `cityedge check`
and `cityedge keys rotate` (which must look at the same file the agent would
load), so it lives apart from all three.
"""

from __future__ import annotations

import os
from pathlib import Path

# The source of systemd/cityedge.service's `LoadCredential=gateway.key:…`: a
# technician's shell has no $CREDENTIALS_DIRECTORY, but the key is here.
UNIT_CREDENTIAL = Path("/etc/cityedge/credentials/gateway.key")


def unit_credential() -> Path:
    """The unit's credential source; $CITYEDGE_CREDENTIAL names another (a test's)."""
    return Path(os.environ.get("CITYEDGE_CREDENTIAL") or UNIT_CREDENTIAL)


def gateway_key_path(configured: Path) -> Path:
    """The key systemd passed as a credential wins; then the configured file; then,
    when that does not exist, the unit's credential source if it does."""
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / "gateway.key").is_file():
        return Path(credentials) / "gateway.key"
    if not configured.exists() and unit_credential().is_file():
        return unit_credential()
    return configured
