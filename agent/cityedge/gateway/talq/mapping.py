"""TALQ functions and attributes ↔ the driver catalogue's profile points.

Device knowledge stays data: a TALQ function is offered for a device when the
device has the points it needs (`needs`), and each of its attributes is either
read from a point (on demand, through the driver), kept by the gateway
(configuration the CMS sets, the calendar a lamp follows, the last command), or
said by the gateway itself (its clock, its own addresses). docs/talq.md prints
this table for people.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from cityedge.sdk.model import DeviceInfo, Value

Source = Literal["point", "stored", "gateway"]
Scope = Literal["configuration", "measurement", "operational", "event"]
GATEWAY_CLASS = "cityedge-gateway"
# the profiles whose gateway-mandatory functions and attributes are all offered here
# (tests/talq/test_profiles.py derives the lists from the data-model file)
SUPPORTED_PROFILES = ("lighting", "cabinetControl")


@dataclass(frozen=True, slots=True)
class AttributeMap:
    name: str
    type: str  # TALQ attribute type, e.g. "AttributeFloat"
    scope: Scope
    source: Source
    point: str | None = None  # the profile point, for source "point"
    writable: bool = False
    unit: str | None = None  # TALQ unit name (TalqUnitEnum)
    scale: float = 1.0  # point value x scale = TALQ value (a meter's W, TALQ's kW)


@dataclass(frozen=True, slots=True)
class FunctionMap:
    function_id: str
    type: str
    needs: tuple[str, ...]  # points a device must have to offer the function
    attributes: tuple[AttributeMap, ...]


def _a(
    name: str,
    type_: str,
    scope: Scope,
    source: Source,
    point: str | None = None,
    *,
    writable: bool = False,
    unit: str | None = None,
    scale: float = 1.0,
) -> AttributeMap:
    return AttributeMap(name, type_, scope, source, point, writable, unit, scale)


BASIC = FunctionMap(
    "basic",
    "BasicFunction",
    (),
    (
        _a("swVersion", "AttributeString", "configuration", "point", "firmware_version"),
        _a("deviceReset", "AttributeBoolean", "event", "gateway"),
        _a("currentTime", "AttributeDateTime", "measurement", "gateway"),
        _a(
            "operatingHours",
            "AttributeInteger",
            "measurement",
            "point",
            "burning_hours",
            unit="Hours",
        ),
        _a("cabinetDoorOpen", "AttributeBoolean", "event", "point", "door_open"),
    ),
)

LAMP_ACTUATOR = FunctionMap(
    "lampActuator",
    "LampActuatorFunction",
    ("dimming",),
    (
        _a(
            "defaultLightState", "AttributeLevelState", "configuration", "point", "failsafe_dimming"
        ),
        _a("targetLightCommand", "AttributeCommand", "operational", "stored", writable=True),
        _a("feedbackLightCommand", "AttributeCommand", "measurement", "point", "dimming"),
        _a("actualLightState", "AttributeLevelState", "measurement", "point", "dimming"),
        _a("calendarID", "AttributeString", "operational", "stored", writable=True),
        _a("lightStateChange", "AttributeBoolean", "event", "gateway"),
    ),
)

LAMP_MONITOR = FunctionMap(
    "lampMonitor",
    "LampMonitorFunction",
    ("lamp_failure",),
    (
        _a("lampFailure", "AttributeBoolean", "event", "point", "lamp_failure"),
        _a("activePower", "AttributeFloat", "measurement", "point", "power", unit="Watts"),
        _a("supplyVoltage", "AttributeFloat", "measurement", "point", "voltage", unit="Volts"),
        _a("supplyCurrent", "AttributeFloat", "measurement", "point", "current", unit="Amperes"),
        _a(
            "activeEnergy", "AttributeFloat", "measurement", "point", "energy", unit="KiloWattHours"
        ),
        _a("powerFactor", "AttributeFloat", "measurement", "point", "power_factor"),
        _a(
            "temperature",
            "AttributeFloat",
            "measurement",
            "point",
            "driver_temperature",
            unit="DegreesCelcius",
        ),
        _a("switchOnCounter", "AttributeInteger", "measurement", "point", "switch_count"),
        _a("controlGearCommFailure", "AttributeBoolean", "event", "point", "driver_fault"),
        _a("highTemperature", "AttributeBoolean", "event", "point", "overtemperature"),
    ),
)

CABINET_METER = FunctionMap(
    "meter",
    "ElectricalMeterFunction",
    ("active_power",),
    (
        _a(
            "totalPower",
            "AttributeFloat",
            "measurement",
            "point",
            "active_power",
            unit="KiloWatt",
            scale=0.001,
        ),
        _a(
            "totalActiveEnergy",
            "AttributeFloat",
            "measurement",
            "point",
            "energy_import",
            unit="KiloWattHours",
        ),
        _a("phase1Voltage", "AttributeFloat", "measurement", "point", "voltage_l1", unit="Volts"),
        _a("phase2Voltage", "AttributeFloat", "measurement", "point", "voltage_l2", unit="Volts"),
        _a("phase3Voltage", "AttributeFloat", "measurement", "point", "voltage_l3", unit="Volts"),
        _a("phase1Current", "AttributeFloat", "measurement", "point", "current_l1", unit="Amperes"),
        _a("phase2Current", "AttributeFloat", "measurement", "point", "current_l2", unit="Amperes"),
        _a("phase3Current", "AttributeFloat", "measurement", "point", "current_l3", unit="Amperes"),
        _a("frequency", "AttributeFloat", "measurement", "point", "frequency", unit="Hertz"),
        _a("totalPowerFactor", "AttributeFloat", "measurement", "point", "power_factor"),
    ),
)

CABINET_CONFIG = FunctionMap(
    "cabinetConfig",
    "CabinetConfigurationFunction",
    ("active_power",),
    (
        _a(
            "actuatingType",
            "AttributeCabinetActuatingType",
            "configuration",
            "stored",
            writable=True,
        ),
    ),
)

CABINET_MONITOR = FunctionMap(
    "cabinetMonitor",
    "CabinetMonitorFunction",
    ("active_power",),
    (_a("applicationType", "AttributeString", "configuration", "stored", writable=True),),
)

GATEWAY = FunctionMap(
    "gateway",
    "GatewayFunction",
    (),
    (
        _a("cmsUri", "AttributeUri", "configuration", "gateway"),
        _a("cmsAddress", "AttributeString", "configuration", "gateway"),
        _a("gatewayUri", "AttributeUri", "configuration", "gateway"),
        _a("gatewayAddress", "AttributeString", "configuration", "gateway"),
        _a("retryPeriod", "AttributeFloat", "configuration", "gateway", unit="Seconds"),
        _a("gatewayRetryPeriod", "AttributeFloat", "configuration", "gateway", unit="Seconds"),
        _a("crlUrn", "AttributeUri", "configuration", "stored", writable=True),
        _a("vendor", "AttributeString", "configuration", "gateway"),
    ),
)

GATEWAY_BASIC = FunctionMap("basic", "BasicFunction", (), BASIC.attributes[:3])
DEVICE_FUNCTIONS = (
    BASIC,
    LAMP_ACTUATOR,
    LAMP_MONITOR,
    CABINET_METER,
    CABINET_CONFIG,
    CABINET_MONITOR,
)
GATEWAY_FUNCTIONS = (GATEWAY_BASIC, GATEWAY)

# Defaults of stored attributes a CMS has not set yet.
STORED_DEFAULTS: dict[str, Any] = {
    "actuatingType": "Relay Control",
    "applicationType": "cityedge",
    "crlUrn": "urn:cityedge:crl:none",
    "swVersion": "unknown",  # a device whose profile has no firmware point
}


def functions_for(info: DeviceInfo) -> list[FunctionMap]:
    """The TALQ functions a device offers: those whose points it has. Attributes
    whose point the device lacks are left out (its class does not list them)."""
    out = []
    for fn in DEVICE_FUNCTIONS:
        if all(p in info.points for p in fn.needs):
            attrs = tuple(
                a
                if a.source != "point" or a.point in info.points
                else AttributeMap(a.name, a.type, a.scope, "stored", None, a.writable, a.unit, 1.0)
                for a in fn.attributes
                if a.source != "point" or a.point in info.points or a.name in STORED_DEFAULTS
            )
            out.append(FunctionMap(fn.function_id, fn.type, fn.needs, attrs))
    return out


def class_name(info: DeviceInfo) -> str:
    """A device class per device type: `cityedge-lamppost`."""
    return f"cityedge-{info.device_type}"


def class_document(name: str, functions: list[FunctionMap]) -> dict[str, Any]:
    """The `DeviceClass` body: functions with their attributes and constraints."""
    return {
        "name": name,
        "functions": [
            {
                "functionId": fn.function_id,
                "type": fn.type,
                "attributes": [_attribute_desc(a) for a in fn.attributes],
            }
            for fn in functions
        ],
    }


def _attribute_desc(attr: AttributeMap) -> dict[str, Any]:
    desc: dict[str, Any] = {"name": attr.name, "readOnly": not attr.writable}
    if attr.type in ("AttributeLevelState", "AttributeCommand"):
        desc |= {"minValue": 0, "maxValue": 100}
    if attr.unit:
        desc["unit"] = attr.unit
    return desc


def level_state(level: float) -> dict[str, Any]:
    return {"name": "LevelState", "value": max(0, min(100, int(level)))}


def attribute(attr: AttributeMap, value: Any, at: dt.datetime | None = None) -> dict[str, Any]:
    """A TALQ attribute body for `value` (a point's value, a stored one, or the
    gateway's), typed as the data model says."""
    out: dict[str, Any] = {"type": attr.type}
    if at is not None:
        out["timestamp"] = at.astimezone(dt.UTC).isoformat()
    if value is None:
        return out
    if attr.scale != 1.0 and isinstance(value, int | float) and not isinstance(value, bool):
        value = value * attr.scale
    out["value"] = convert(attr.type, value)
    return out


def convert(type_: str, value: Any) -> Any:
    if type_ == "AttributeLevelState":
        return level_state(_number(value))
    if type_ == "AttributeCommand":
        if isinstance(value, dict):
            return value
        return {"state": level_state(_number(value))}
    if type_ == "AttributeBoolean":
        return bool(value)
    if type_ == "AttributeFloat":
        return float(_number(value))
    if type_ == "AttributeInteger":
        return int(_number(value))
    return str(value)


def _number(value: Value | Any) -> float:
    if isinstance(value, bool):
        return 100.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
