"""The `[talq]` table: the TALQ gateway API and the CMS it reports to.

    [talq]
    mode = "production"                 # HTTPS with mutual TLS; "test": plain HTTP
    listen = "0.0.0.0:8443"
    gateway_uri = "https://gw-17.city.example:8443"   # what the CMS calls back
    cms_uri = "https://cms.city.example/talq"
    cert_file = "/etc/cityedge/talq/gateway.crt"      # this gateway's certificate
    key_file = "/etc/cityedge/talq/gateway.key"
    ca_file = "/etc/cityedge/talq/cms-ca.crt"         # who may call: the CMS's CA

Only the table: validated on every gateway, so nothing here loads aiohttp.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from cityedge.sdk.addresses import parse_address
from cityedge.sdk.tables import Field, Table, check, check_table

PROFILES = (
    "lighting",
    "wasteManagement",
    "environmentalMonitoring",
    "smartParking",
    "cabinetControl",
)


class TalqSection(Table):
    mode: Literal["production", "test"] = "production"
    listen: str = "0.0.0.0:8443"
    gateway_uri: str = Field(min_length=1, max_length=512, pattern=r"^https?://\S+$")
    cms_uri: str = Field(min_length=1, max_length=512, pattern=r"^https?://\S+$")
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    vendor: str = Field(default="cityedge", min_length=1, max_length=64)
    profiles: list[str] = Field(default_factory=lambda: ["lighting"])
    # seconds between attempts while the CMS does not answer (GatewayFunction.retryPeriod)
    retry_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    request_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    queue_max_bytes: Annotated[int, Field(ge=64 * 1024)] = 64 * 1024 * 1024

    @check("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_address(value)  # AddressProblem (a ValueError) says what is wrong
        return value

    @check("profiles")
    @classmethod
    def _profiles(cls, value: list[str]) -> list[str]:
        unknown = [p for p in value if p not in PROFILES]
        if unknown:
            raise ValueError(f"unsupported profile(s) {unknown}: use {', '.join(PROFILES)}")
        return value

    @check_table
    def _tls(self) -> None:
        if self.mode == "production" and None in (self.cert_file, self.key_file, self.ca_file):
            raise ValueError(
                'mode = "production" serves HTTPS with mutual TLS: cert_file, key_file and '
                'ca_file are required (mode = "test" allows plain HTTP)'
            )

    @property
    def host(self) -> str:
        return parse_address(self.listen)[0]

    @property
    def port(self) -> int:
        return parse_address(self.listen)[1]
