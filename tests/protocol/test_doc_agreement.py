"""docs/protocol.md and the agent name the same result codes, operations and event
kinds, each side read from its one registry: the doc's tables are parsed, the code's
registries imported, and every kind the code passes to `Event(...)` is found in the
source. A name on one side only fails here."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from cityedge.gateway.commands import OPERATIONS, SECURITY_CODES
from cityedge.sdk.event_kinds import EVENT_KINDS, KINDS
from cityedge.sdk.model import ResultCode

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "protocol.md").read_text()
SOURCES = [*(ROOT / "agent").rglob("*.py"), *(ROOT / "drivers").rglob("*.py")]
PRODUCT = [p for p in SOURCES if "street" not in p.parts]  # the simulators send no events


def section(title: str) -> str:
    """The text of the doc's section (## or ###) whose heading starts with `title`."""
    match = re.search(rf"^(#+) {re.escape(title)}.*$", DOC, re.MULTILINE)
    assert match, f"docs/protocol.md has no section {title!r}"
    level = len(match.group(1))
    rest = DOC[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: end.start() if end else len(rest)]


def table(text: str) -> list[list[str]]:
    """The rows of the first table in `text`, cells stripped, header and rule left out."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len(rows) > 2, "no table"
    cells = [re.split(r"(?<!\\)\|", row.strip())[1:-1] for row in rows[2:]]
    return [[cell.strip() for cell in row] for row in cells]


def names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_result_codes_are_the_documented_ones_in_check_order() -> None:
    rows = table(section("8.2 Result codes"))
    documented = [names(row[0])[0] for row in rows]
    assert documented == [code.value for code in ResultCode]
    checks = [int(re.findall(r"\d+", row[1])[0]) if row[1] != "—" else 0 for row in rows]
    assert checks == sorted(checks), "the table is not in the order of the checks"
    for row in rows:
        code = ResultCode(names(row[0])[0])
        counted = set(names(row[4]))
        expected = {f"security.{code}"} if code in SECURITY_CODES else set()
        if code is ResultCode.BUSY:
            expected = {"commands.busy"}
        elif code not in SECURITY_CODES - {ResultCode.DENIED}:
            expected.add("command.audit")
        assert counted == expected, (code, counted)


def test_the_numbered_command_checks_name_every_refusal_code() -> None:
    text = section("4.1 Verification order").split("**A command, at the gateway**")[1]
    said = {code for code in re.findall(r"→ `([a-z-]+)`", text)}
    refused = {c.value for c in ResultCode} - {"busy", "done", "unreachable", "timed-out",
                                                "rejected"}  # fmt: skip
    checks_1_to_6 = {"too-large", "malformed", "unsupported-version", "unknown-key",
                     "bad-signature"}  # fmt: skip
    assert said | checks_1_to_6 == refused


def test_operations_are_the_documented_ones() -> None:
    rows = table(section("8.4 Operations"))
    documented = {names(row[0])[0]: row[1] for row in rows}
    assert set(documented) == set(OPERATIONS)
    rule = {"none": "nil", "optional": "optional", "required": "required"}
    for op, spec in OPERATIONS.items():
        assert documented[op] == rule[spec.device.value], op


def test_event_kinds_are_the_documented_ones_with_their_data() -> None:
    rows = table(section("13. Event kinds"))
    documented = {names(row[0])[0]: names(row[4]) for row in rows}
    assert set(documented) == KINDS
    for kind in EVENT_KINDS:
        assert documented[kind.kind] == list(kind.data), kind.kind


def _module_constants(tree: ast.Module) -> dict[str, str]:
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets if isinstance(target, ast.Name)
    }  # fmt: skip


def _event_kinds_in(path: Path) -> Iterator[tuple[str, bool]]:
    """(kind, exact) for every kind `path` passes to Event(...) or an event helper:
    exact for a literal or a module constant, a prefix for an f-string."""
    tree = ast.parse(path.read_text(), str(path))
    constants = _module_constants(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if name not in ("Event", "_event", "_report", "unreachable_event"):
            continue
        if name == "unreachable_event":
            yield constants.get("UNREACHABLE_EVENT", "device.unreachable"), True
            continue
        first = (
            node.args[0]
            if node.args
            else next((k.value for k in node.keywords if k.arg == "kind"), None)
        )
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            yield first.value, True
        elif isinstance(first, ast.Name) and first.id in constants:
            yield constants[first.id], True
        elif isinstance(first, ast.JoinedStr) and isinstance(
            head := (first.values[0] if first.values else None), ast.Constant
        ):
            yield str(head.value), False


def test_every_event_the_code_sends_is_registered() -> None:
    exact = {kind for kind in KINDS if not kind.startswith("<")}
    found: list[tuple[str, bool, Path]] = [
        (kind, is_exact, path) for path in PRODUCT for kind, is_exact in _event_kinds_in(path)
    ]
    assert len(found) >= 20, "the scan found too few Event(...) calls to be working"
    for kind, is_exact, path in found:
        if is_exact:
            assert kind in exact, f"{path.relative_to(ROOT)}: event {kind!r} is not registered"
        else:
            assert any(k.startswith(kind) for k in exact), f"{path}: events {kind}… unregistered"


def test_every_registered_event_is_sent_by_the_code() -> None:
    text = "\n".join(p.read_text() for p in PRODUCT)
    prefixes = {kind for path in PRODUCT for kind, exact in _event_kinds_in(path) if not exact}
    for kind in KINDS:
        if kind == "security.<code>":
            assert 'f"{self.prefix}.{code}"' in text and 'prefix: str = "security"' in text
            continue
        if kind.startswith("<"):
            continue  # named by profiles and codecs
        if f'"{kind}"' in text:
            continue
        prefix = next((p for p in prefixes if p and kind.startswith(p)), None)
        assert prefix is not None, f"registered event {kind!r} is sent nowhere"
        assert f'"{kind.removeprefix(prefix)}' in text, f"registered event {kind!r} is sent nowhere"
