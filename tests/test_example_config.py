"""`config/agent.example.toml` documents every key the agent reads.

The keys are walked from the config's own tables (the agent's sections and every
driver's, each variant of it), so a key added to a table without a line in the
example fails here. A key counts as documented when its table's section in the
example sets it or shows it commented out (`# username = ...`). Lighting and
policy are documented in docs/lighting.md and docs/security.md.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from pathlib import Path

from cityedge.gateway.config import AgentConfig
from cityedge.gateway.registry import known_kinds, section_model
from cityedge.sdk.tables import Table

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "agent.example.toml"
HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?")
ASSIGNMENT = re.compile(r"^[#\s]*([A-Za-z0-9_]+)\s*=")
# Tables of the root that are not keys of their own: drivers are walked per kind.
NOT_KEYS = {("", "drivers")}
# Documented in docs/security.md and docs/lighting.md: the example shows one of each.
ELSEWHERE = {("", "policy"), ("", "lighting")}


def tables_in(annotation: object) -> Iterator[type[Table]]:
    if isinstance(annotation, type) and issubclass(annotation, Table):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from tables_in(arg)


def variants(table: type[Table]) -> Iterator[type[Table]]:
    """A driver's section and the tables it dispatches to (Modbus: tcp, rtu)."""
    yield table
    for sub in table.__subclasses__():
        yield from variants(sub)


def keys_of(table: type[Table], path: str) -> Iterator[tuple[str, str]]:
    hints = typing.get_type_hints(table, include_extras=True)
    for key, spec in table._keys().items():
        yield path, key
        if (path, key) in ELSEWHERE:
            continue
        for inner in tables_in(hints[spec.name]):
            yield from keys_of(inner, f"{path}.{key}" if path else key)


def every_key() -> set[tuple[str, str]]:
    keys = set(keys_of(AgentConfig, ""))
    for kind in known_kinds():
        for table in variants(section_model(kind)):
            keys |= set(keys_of(table, f"drivers.{kind}"))
    return keys - NOT_KEYS - ELSEWHERE


def documented() -> set[tuple[str, str]]:
    """(section, key) for every key the example sets or shows commented out."""
    found: set[tuple[str, str]] = set()
    section = ""
    for line in EXAMPLE.read_text().splitlines():
        if header := HEADER.match(line.lstrip("# ")):
            section = header.group(1)
            found.add(section.rpartition(".")[::2])  # the table itself is a key of its parent
        elif assignment := ASSIGNMENT.match(line):
            found.add((section, assignment.group(1)))
    return found


def test_the_walk_sees_the_tables_it_must() -> None:
    keys = every_key()
    assert ("uplink", "cert_file") in keys
    assert ("drivers.modbus", "baud") in keys  # the RTU variant
    assert ("drivers.modbus.devices", "host") in keys  # the TCP variant's devices
    assert ("drivers.ble.devices.gatt", "every") in keys
    assert len(keys) > 100


def test_every_key_is_in_the_example() -> None:
    missing = sorted(every_key() - documented())
    assert not missing, "keys without a line in config/agent.example.toml: " + ", ".join(
        f"{section}.{key}" if section else key for section, key in missing
    )
