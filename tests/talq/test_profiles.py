"""Every function and attribute the TALQ data-model file marks mandatory for a
gateway (`x-talq-profiles.<profile>.gw == "M"`) in each profile this gateway
announces is offered by the device classes of a street of lampposts and a cabinet
meter — computed from the file, not from a hand-kept list. Each offered
attribute has the type and scope the file gives it."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from cityedge.gateway.talq import mapping
from cityedge.gateway.talq.devices import services
from cityedge.street.modbus import ModbusStreet
from tests.talq.site import DATA_MODEL, GATEWAY_SPEC, Site, free_port, needs_spec, sample_config

pytestmark = needs_spec


@cache
def schemas() -> dict[str, Any]:
    return dict(json.loads(DATA_MODEL.read_text())["components"]["schemas"])


def own_part(schema: dict[str, Any]) -> dict[str, Any]:
    """The part of an `allOf` that is not the parent's `$ref`."""
    for part in schema.get("allOf", []):
        if "$ref" not in part:
            return dict(part)
    return schema


def level(node: dict[str, Any], profile: str) -> str | None:
    for entry in node.get("x-talq-profiles", []):
        if profile in entry:
            return str(entry[profile].get("gw"))
    return None


def mandatory(profile: str) -> dict[str, set[str]]:
    """Function type -> its gateway-mandatory attributes, for one profile."""
    out: dict[str, set[str]] = {}
    for name, schema in schemas().items():
        if not name.endswith("Function") or name == "Function":
            continue
        body = own_part(schema)
        if level(body, profile) != "M":
            continue
        out[name] = {
            attr for attr, spec in body.get("properties", {}).items()
            if level(own_part(spec), profile) == "M"
        }  # fmt: skip
    return out


def attribute_facts(function: str, attribute: str) -> tuple[str, str | None]:
    """(attribute type, scope) the file gives an attribute of a function."""
    spec = own_part(schemas()[function])["properties"][attribute]
    refs = [p["$ref"].rsplit("/", 1)[1] for p in spec.get("allOf", []) if "$ref" in p]
    return refs[0], own_part(spec).get("x-talq-scope")


def test_the_file_marks_what_a_lighting_gateway_must_offer() -> None:
    lighting = mandatory("lighting")
    assert {"LampActuatorFunction", "LampMonitorFunction", "GatewayFunction"} <= set(lighting)
    assert "targetLightCommand" in lighting["LampActuatorFunction"]


async def test_every_mandatory_function_and_attribute_of_the_supported_profiles(
    tmp_path: Path,
) -> None:
    async with ModbusStreet(lampposts=2, meters=1) as street:
        config = sample_config(tmp_path, street, port=free_port(), cms_uri="http://127.0.0.1:9")
        site = Site(config)
        offered: dict[str, set[str]] = {}
        for functions in site.core.classes().values():
            for fn in functions:
                offered.setdefault(fn.type, set()).update(a.name for a in fn.attributes)
        announced = next(s for s in services(site.core) if s["name"] == "ConfigurationService")
    assert set(announced["supportedProfiles"]) == set(mapping.SUPPORTED_PROFILES)
    missing = []
    for profile in mapping.SUPPORTED_PROFILES:
        for function, attributes in sorted(mandatory(profile).items()):
            if function not in offered:
                missing.append(f"{profile}: {function}")
            missing += [f"{profile}: {function}.{a}" for a in sorted(attributes - offered.get(
                function, set()))]  # fmt: skip
    assert not missing, "mandatory for the gateway but not offered:\n" + "\n".join(missing)


def test_every_mandatory_operation_of_the_supported_profiles_is_served() -> None:
    from tests.talq.test_conformance import IMPLEMENTED

    spec = json.loads(GATEWAY_SPEC.read_text())
    missing = set()
    for operations in spec["paths"].values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "operationId" not in operation:
                continue
            for profile in mapping.SUPPORTED_PROFILES:
                if level({"x-talq-profiles": operation.get("x-talq-profiles", [])}, profile) == "M":
                    missing.add(f"{profile}: {operation['operationId']}")
    missing = {m for m in missing if m.split(": ")[1] not in IMPLEMENTED}
    assert not missing, sorted(missing)


def test_every_mapped_attribute_has_the_files_type_and_scope() -> None:
    wrong = []
    for fn in (*mapping.DEVICE_FUNCTIONS, *mapping.GATEWAY_FUNCTIONS):
        for attr in fn.attributes:
            type_, scope = attribute_facts(fn.type, attr.name)
            if (attr.type, attr.scope) != (type_, scope):
                wrong.append(
                    f"{fn.type}.{attr.name}: {attr.type}/{attr.scope}, file {type_}/{scope}"
                )
    assert not wrong, "\n".join(wrong)
