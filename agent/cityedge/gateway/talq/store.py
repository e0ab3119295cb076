"""What the CMS gave the gateway, kept across restarts: its addresses, the devices'
TALQ addresses, groups, calendars, control programs, logger configurations, the
calendar each lamp follows and the attributes the CMS set.

One JSON document rewritten with `sdk.atomic` on every change: a power cut
leaves the old document or the new, never half. The documents are kept as the
CMS sent them (they answer GETs byte for byte in meaning).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import structlog

from cityedge.sdk.atomic import write_atomic

log = structlog.get_logger(__name__)

COLLECTIONS = ("groups", "calendars", "programs", "loggers")


class TalqStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.gateway_address = str(uuid.uuid4())  # until the CMS gives one
        self.cms_address: str | None = None
        self.bootstrapped = False
        self.devices: dict[str, str] = {}  # device name -> TALQ address
        self.announced: set[str] = set()  # device names the CMS has been told of
        self.groups: dict[str, dict[str, Any]] = {}
        self.calendars: dict[str, dict[str, Any]] = {}
        self.programs: dict[str, dict[str, Any]] = {}
        self.loggers: dict[str, dict[str, Any]] = {}
        self.assigned: dict[str, str] = {}  # device name -> calendar id
        self.group_calendars: dict[str, str] = {}  # group address -> calendar id
        self.attributes: dict[str, Any] = {}  # "<address>/<function>/<attribute>" -> value
        # the lighting document as it was before TALQ calendars took lamps over (the
        # config's, or the command post's): lamps leaving every calendar go back to it
        self.base_lighting: dict[str, Any] | None = None
        self._load()

    def address_of(self, device: str) -> str:
        """The device's TALQ address: a UUID given once, kept for ever."""
        address = self.devices.get(device)
        if address is None:
            address = self.devices[device] = str(uuid.uuid4())
            self.save()
        return address

    def device_at(self, address: str) -> str | None:
        for name, known in self.devices.items():
            if known == address:
                return name
        return None

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.error("talq.store_unreadable", path=str(self.path), error=str(exc))
            return
        if not isinstance(raw, dict):
            log.error("talq.store_unreadable", path=str(self.path), error="not an object")
            return
        self.gateway_address = str(raw.get("gateway_address", self.gateway_address))
        cms = raw.get("cms_address")
        self.cms_address = cms if isinstance(cms, str) else None
        self.bootstrapped = bool(raw.get("bootstrapped", False))
        for name in ("devices", "assigned", "group_calendars", "attributes", *COLLECTIONS):
            value = raw.get(name)
            if isinstance(value, dict):
                setattr(self, name, value)
        base = raw.get("base_lighting")
        self.base_lighting = base if isinstance(base, dict) else None
        announced = raw.get("announced")
        if isinstance(announced, list):
            self.announced = {a for a in announced if isinstance(a, str)}

    def save(self) -> None:
        data = {
            "gateway_address": self.gateway_address,
            "cms_address": self.cms_address,
            "bootstrapped": self.bootstrapped,
            "devices": self.devices,
            "announced": sorted(self.announced),
            "assigned": self.assigned,
            "group_calendars": self.group_calendars,
            "attributes": self.attributes,
            "base_lighting": self.base_lighting,
            **{name: getattr(self, name) for name in COLLECTIONS},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(data, indent=1), mode=0o600)
