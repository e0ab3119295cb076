"""The TALQ gateway's state and what it asks of the agent around it.

`TalqCore` is shared by the resource handlers: the store, the catalogue seen as
TALQ devices, the lighting controller (calendars and control programs) and the
override feature (override commands). It never touches MQTT or a driver
directly: devices are read and written through the agent (`AgentSide`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from cityedge.gateway.talq import mapping, translate
from cityedge.gateway.talq.errors import TalqError, not_found, unprocessable
from cityedge.gateway.talq.mapping import AttributeMap, FunctionMap
from cityedge.gateway.talq.section import TalqSection
from cityedge.gateway.talq.store import TalqStore
from cityedge.sdk.driver import Driver
from cityedge.sdk.model import Command, DeviceError, DeviceInfo, Reading, ResultCode

if TYPE_CHECKING:
    from cityedge.gateway.control.overrides import Overrides
    from cityedge.gateway.lighting.controller import LightingController

log = structlog.get_logger(__name__)

READ_TIMEOUT = 10.0


class AgentSide(Protocol):
    """What the TALQ gateway needs of the running agent (the runtime's `Agent` is it)."""

    @property
    def overrides(self) -> Overrides: ...
    @property
    def lighting(self) -> LightingController | None: ...

    def devices(self) -> dict[str, DeviceInfo]: ...
    def driver_for(self, device: str) -> Driver | None: ...


class TalqCore:
    def __init__(
        self,
        section: TalqSection,
        agent: AgentSide,
        store: TalqStore,
        *,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.section = section
        self.agent = agent
        self.store = store
        self.now = now or (lambda: dt.datetime.now(dt.UTC))
        self.lock = asyncio.Lock()  # one change of the lighting document at a time

    # --- devices as TALQ sees them ----------------------------------------------------

    def catalogue(self) -> dict[str, tuple[str, str, list[FunctionMap]]]:
        """TALQ address -> (device name, class name, functions); the gateway first."""
        out: dict[str, tuple[str, str, list[FunctionMap]]] = {
            self.store.gateway_address: (
                "gateway",
                mapping.GATEWAY_CLASS,
                list(mapping.GATEWAY_FUNCTIONS),
            ),
        }
        for name, info in sorted(self.agent.devices().items()):
            out[self.store.address_of(name)] = (
                name,
                mapping.class_name(info),
                mapping.functions_for(info),
            )
        return out

    def classes(self) -> dict[str, list[FunctionMap]]:
        return {cls: fns for _, cls, fns in self.catalogue().values()}

    def lookup(self, address: str) -> tuple[str, str, list[FunctionMap]]:
        found = self.catalogue().get(address)
        if found is None:
            raise not_found(f"device {address}")
        return found

    def function(self, address: str, function_id: str) -> tuple[str, FunctionMap]:
        name, _, functions = self.lookup(address)
        for fn in functions:
            if fn.function_id == function_id:
                return name, fn
        raise not_found(f"function {function_id} of device {address}")

    async def values(
        self,
        device: str,
        address: str,
        fn: FunctionMap,
        attrs: list[AttributeMap],
        *,
        read: bool,
    ) -> dict[str, Any]:
        """Attribute bodies of `fn`; with `read`, its points are read from the device now,
        in one read through the device's driver, stamped with the reading's time."""
        points = sorted({a.point for a in attrs if a.source == "point" and a.point})
        readings = await self._read(device, points) if read and points else {}
        out: dict[str, Any] = {}
        now = self.now()
        for attr in attrs:
            if attr.source == "point":
                reading = readings.get(attr.point or "")
                value = reading.value if reading is not None else None
                at = dt.datetime.fromtimestamp(reading.ts, dt.UTC) if reading else None
            else:
                value, at = self.value(device, address, fn, attr), now
            out[attr.name] = mapping.attribute(attr, value, at if value is not None else None)
        return out

    async def _read(self, device: str, points: list[str]) -> dict[str, Reading]:
        driver = self.agent.driver_for(device)
        if driver is None:
            return {}
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                readings = await driver.read(device, points)
        except (TimeoutError, DeviceError) as exc:
            log.warning("talq.read_failed", device=device, points=points, error=str(exc))
            return {}
        return {r.point: r for r in readings}

    def value(self, device: str, address: str, fn: FunctionMap, attr: AttributeMap) -> Any:
        """What the gateway says or keeps for an attribute that is not a point."""
        if attr.source == "gateway":
            return self._gateway_value(device, attr)
        if attr.name == "calendarID":
            return self.calendars_in_force().get(device)
        key = f"{address}/{fn.function_id}/{attr.name}"
        return self.store.attributes.get(key, mapping.STORED_DEFAULTS.get(attr.name))

    def _gateway_value(self, device: str, attr: AttributeMap) -> Any:
        s = self.section
        return {
            "currentTime": self.now().isoformat(),
            "deviceReset": False,
            "lightStateChange": False,
            "cmsUri": s.cms_uri,
            "cmsAddress": self.store.cms_address or "",
            "gatewayUri": s.gateway_uri,
            "gatewayAddress": self.store.gateway_address,
            "retryPeriod": s.retry_s,
            "gatewayRetryPeriod": s.retry_s,
            "vendor": s.vendor,
        }.get(attr.name)

    async def device_document(self, address: str, *, read: bool) -> dict[str, Any]:
        name, cls, functions = self.lookup(address)
        return {
            "address": address,
            "name": name,
            "class": cls,
            "functions": [
                {
                    "id": fn.function_id,
                    "type": fn.type,
                    **await self.values(name, address, fn, list(fn.attributes), read=read),
                }
                for fn in functions
            ],
        }

    # --- calendars and programs → the lighting controller ---------------------------

    async def apply_lighting(self) -> None:
        """Rebuild the lighting document from the TALQ calendars and push it: stored
        durably and applied atomically by the controller, or refused whole."""
        controller = self.agent.lighting
        if controller is None:
            if self.calendars_in_force():
                raise unprocessable(
                    "assignmentEntityNotValid",
                    "this gateway runs no lighting (no [lighting] table)",
                )
            return
        running = controller.lighting.dump()
        if self.store.base_lighting is None or not any(
            g["name"].startswith(translate.PREFIX) for g in running["groups"]
        ):  # no calendar in it: the config's or the command post's document is the base
            self.store.base_lighting = running
            self.store.save()
        doc = translate.lighting_document(
            self.store.base_lighting, self.store.calendars, self.store.programs,
            self.calendars_in_force(),
        )  # fmt: skip
        if {**doc, "version": 0} == {**running, "version": 0}:
            return  # nothing the lamps run has changed
        doc["version"] = controller.lighting.version + 1
        cmd = Command(
            str(uuid.uuid4()),
            "talq",
            None,
            "lighting.program",
            {"lighting": doc},
            time.time(),
            time.time() + 60,
            "talq",
        )
        result = await controller.push(cmd)
        if result.code != ResultCode.DONE:
            raise TalqError(
                422, "payloadError", f"the lighting controller refused it: {result.detail}"
            )
        log.info("talq.lighting_applied", version=doc["version"])

    def calendars_in_force(self) -> dict[str, str]:
        """Device -> the calendar it follows: its group's (members as they are now),
        unless one was set on the device itself."""
        out: dict[str, str] = {}
        for group, calendar in sorted(self.store.group_calendars.items()):
            for device in self.members([{"resource": "groups", "address": group}]):
                out[device] = calendar
        out.update(self.store.assigned)
        return out

    def members(self, references: list[dict[str, Any]], depth: int = 0) -> set[str]:
        """Device names behind references to devices, their functions and groups."""
        out: set[str] = set()
        for ref in references:
            if not isinstance(ref, dict):
                continue
            resource, address = ref.get("resource"), str(ref.get("address", ""))
            if resource == "devices":
                device = self.store.device_at(address.split("/")[0])
                if device is not None:
                    out.add(device)
            elif resource == "groups" and depth < 8:
                group = self.store.groups.get(address)
                members = group.get("members") if isinstance(group, dict) else None
                if isinstance(members, list):
                    out |= self.members(members, depth + 1)
        return out
