"""Devices, their functions and attributes, device classes and services: the
configuration and on-demand read services of the gateway API."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cityedge.gateway.talq import mapping
from cityedge.gateway.talq.core import TalqCore
from cityedge.gateway.talq.errors import bad_request, conflict, not_found, unprocessable
from cityedge.gateway.talq.http import Call, body_list, body_object, endpoint, require

SERVICE_NAMES = (
    "ConfigurationService",
    "ControlService",
    "DataCollectService",
    "GroupManagementService",
)


def services(core: TalqCore) -> list[dict[str, Any]]:
    """The services this gateway offers, with their options (also POSTed at bootstrap)."""
    return [
        {
            "name": "ConfigurationService",
            "commissioningSupported": False,
            "devicesPaginationSupported": True,
            "supportedProfiles": list(mapping.SUPPORTED_PROFILES),
        },
        {
            "name": "ControlService",
            "supportedTypes": [
                "AstroClockActivePeriod",
                "AbsoluteActivePeriod",
                "AstroClockTimeControl",
                "ccDay",
            ],
            "maximumCalendars": 64,
            "maximumPrograms": 64,
            "maxSwitchPointsPerProgram": 24,
            "maxActivePeriodsPerProgram": 1,
            "ccDaySupport": "full",
            "dayOffset": 12,  # a night belongs to the date it starts on (docs/lighting.md)
            "programSecondsSupported": False,
        },
        {
            "name": "DataCollectService",
            "supportedModes": ["PeriodicRecordingMode", "ImmediateReportingMode"],
            "maximumDataLogs": 64,
            "samplingPeriodSupported": True,
        },
        {"name": "GroupManagementService", "maximumNumberOfGroups": 256, "maximumGroupSize": 1024},
    ]


def routes(core: TalqCore) -> list[web.RouteDef]:
    async def list_devices(call: Call) -> tuple[int, Any]:
        wanted = [c for c in call.query.get("deviceClasses", "").split(",") if c]
        offset, limit = _page(call)
        docs = [await core.device_document(a, read=False) for a in core.catalogue()]
        docs = [d for d in docs if not wanted or d["class"] in wanted]
        return 200, docs[offset : offset + limit] if limit else docs[offset:]

    async def count_devices(call: Call) -> tuple[int, Any]:
        return 200, len(core.catalogue())

    async def get_device(call: Call) -> tuple[int, Any]:
        return 200, await core.device_document(call.match["deviceAddress"], read=True)

    async def get_function(call: Call) -> tuple[int, Any]:
        address = call.match["deviceAddress"]
        name, fn = core.function(address, call.match["functionId"])
        scope = call.query.get("attributeScope")
        attrs = [a for a in fn.attributes if scope is None or a.scope == scope]
        values = await core.values(name, address, fn, attrs, read=True)
        return 200, {"id": fn.function_id, "type": fn.type, **values}

    async def get_attribute(call: Call) -> tuple[int, Any]:
        address = call.match["deviceAddress"]
        name, fn = core.function(address, call.match["functionId"])
        attr = _attribute(fn, call.match["attributeName"])
        values = await core.values(name, address, fn, [attr], read=True)
        return 200, values[attr.name]

    async def patch_attribute(call: Call) -> tuple[int, Any]:
        address = call.match["deviceAddress"]
        name, fn = core.function(address, call.match["functionId"])
        attr = _attribute(fn, call.match["attributeName"])
        await _write(core, name, address, fn, attr, body_object(call, "Attribute"))
        return 200, None

    async def patch_function(call: Call) -> tuple[int, Any]:
        address = call.match["deviceAddress"]
        name, fn = core.function(address, call.match["functionId"])
        body = body_object(call, "Function")
        for key, value in body.items():
            if key in ("id", "type") or not isinstance(value, dict):
                continue
            await _write(core, name, address, fn, _attribute(fn, key), value)
        return 200, None

    async def patch_devices(call: Call) -> tuple[int, Any]:
        docs = body_list(call, "Device")
        for doc in docs:
            await _write_device(core, doc, whole=call.method == "PUT")
        if call.method == "PATCH":
            return 200, None
        return 200, [await core.device_document(d["address"], read=False) for d in docs]

    async def patch_device(call: Call) -> tuple[int, Any]:
        doc = body_object(call, "Device")
        await _write_device(core, {**doc, "address": call.match["deviceAddress"]}, whole=False)
        return 200, None

    async def add_devices(call: Call) -> tuple[int, Any]:
        for doc in body_list(call, "Device"):
            require(doc, "Device", "address", "name", "class")
            if doc["address"] in core.catalogue():
                raise conflict(f"device {doc['address']} exists")
        # a device is commissioned where its protocol and registers are known: the config
        raise unprocessable(
            "resourceConflict",
            "devices are commissioned in the gateway's configuration (drivers and profiles), "
            "not over TALQ",
        )

    async def delete_device(call: Call) -> tuple[int, Any]:
        name, _, _ = core.lookup(call.match["deviceAddress"])
        raise unprocessable(
            "resourceConflict", f"{name} is configured on the gateway: remove it there"
        )

    async def list_classes(call: Call) -> tuple[int, Any]:
        return 200, [mapping.class_document(n, f) for n, f in sorted(core.classes().items())]

    async def count_classes(call: Call) -> tuple[int, Any]:
        return 200, len(core.classes())

    async def get_class(call: Call) -> tuple[int, Any]:
        functions = core.classes().get(call.match["className"])
        if functions is None:
            raise not_found(f"device class {call.match['className']}")
        return 200, mapping.class_document(call.match["className"], functions)

    async def list_services(call: Call) -> tuple[int, Any]:
        return 200, services(core)

    async def get_service(call: Call) -> tuple[int, Any]:
        for service in services(core):
            if service["name"] == call.match["serviceName"]:
                return 200, service
        raise not_found(f"service {call.match['serviceName']}")

    dev = ("deviceAddress",)
    return [
        web.get("/devices", endpoint(list_devices)),
        web.get("/devices/count", endpoint(count_devices)),
        web.patch("/devices", endpoint(patch_devices)),
        web.put("/devices", endpoint(patch_devices)),
        web.post("/devices", endpoint(add_devices)),
        web.get("/devices/{deviceAddress}", endpoint(get_device, uuid_params=dev)),
        web.patch("/devices/{deviceAddress}", endpoint(patch_device, uuid_params=dev)),
        web.delete("/devices/{deviceAddress}", endpoint(delete_device, uuid_params=dev)),
        web.get("/devices/{deviceAddress}/{functionId}", endpoint(get_function, uuid_params=dev)),
        web.patch(
            "/devices/{deviceAddress}/{functionId}", endpoint(patch_function, uuid_params=dev)
        ),
        web.get(
            "/devices/{deviceAddress}/{functionId}/{attributeName}",
            endpoint(get_attribute, uuid_params=dev),
        ),
        web.patch(
            "/devices/{deviceAddress}/{functionId}/{attributeName}",
            endpoint(patch_attribute, uuid_params=dev),
        ),
        web.get("/device-classes", endpoint(list_classes)),
        web.get("/device-classes/count", endpoint(count_classes)),
        web.get("/device-classes/{className}", endpoint(get_class)),
        web.get("/services", endpoint(list_services)),
        web.get("/services/{serviceName}", endpoint(get_service)),
    ]


def _page(call: Call) -> tuple[int, int]:
    try:
        offset = int(call.query.get("offset", "0"))
        limit = int(call.query.get("limit", "0"))
    except ValueError:
        raise bad_request("parameterValueNotValid", "offset and limit are numbers") from None
    if offset < 0 or limit < 0:
        raise bad_request("parameterValueNotValid", "offset and limit are 0 or more")
    return offset, limit


def _attribute(fn: mapping.FunctionMap, name: str) -> mapping.AttributeMap:
    for attr in fn.attributes:
        if attr.name == name:
            return attr
    raise not_found(f"attribute {name} of function {fn.function_id}")


async def _write_device(core: TalqCore, doc: dict[str, Any], *, whole: bool) -> None:
    """The attributes of a Device body, function by function. A whole device (PUT)
    carries read-only attributes too: those are left as the device says they are."""
    require(doc, "Device", "address")
    name, _, _ = core.lookup(doc["address"])
    for function in doc.get("functions") or []:
        if not isinstance(function, dict) or not isinstance(function.get("id"), str):
            raise bad_request("payloadError", "Device.functions: each needs an id")
        _, fn = core.function(doc["address"], function["id"])
        for key, value in function.items():
            if key in ("id", "type") or not isinstance(value, dict):
                continue
            attr = _attribute(fn, key)
            if whole and not attr.writable:
                continue
            await _write(core, name, doc["address"], fn, attr, value)


async def _write(
    core: TalqCore,
    device: str,
    address: str,
    fn: mapping.FunctionMap,
    attr: mapping.AttributeMap,
    body: dict[str, Any],
) -> None:
    """A CMS sets an attribute: a calendar for a lamp, a command, or a stored value."""
    if "value" not in body:
        raise bad_request("payloadError", f"attribute {attr.name}: value missing")
    value = body["value"]
    if not attr.writable:
        # a CMS echoing what the gateway said (its configuration, after the bootstrap)
        current = core.value(device, address, fn, attr) if attr.source != "point" else None
        if current is not None and mapping.convert(attr.type, current) == value:
            return
        raise unprocessable(
            "resourceConflict",
            f"attribute {attr.name} is read-only here"
            + (" (set in the gateway's configuration)" if attr.source == "gateway" else ""),
        )
    if attr.name == "calendarID":
        from cityedge.gateway.talq.control import assign_calendar

        await assign_calendar(core, {device}, value if isinstance(value, str) else "")
        return
    if attr.name == "targetLightCommand":
        from cityedge.gateway.talq.control import command_devices

        await command_devices(core, {device}, value)
        return
    if value is not None and not isinstance(value, str | int | float | bool):
        raise unprocessable("payloadError", f"attribute {attr.name}: unsupported value")
    core.store.attributes[f"{address}/{fn.function_id}/{attr.name}"] = value
    core.store.save()
