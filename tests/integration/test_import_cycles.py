"""No import cycle among the modules of `cityedge.gateway` and `cityedge.cli`, counted
the strict way: every `import` in the file, inside functions too (a lazy import still
ties the two modules together), but not those under `if TYPE_CHECKING:` (types only)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "agent"
PACKAGES = ("cityedge/gateway", "cityedge/cli")
# Cycles through config/policy/lighting: ConfigError lives in config, which validates
# the policy and lighting tables lazily. Their owners untie them on their branch;
# this list shrinks to nothing then (a cycle that is gone fails the test too).
KNOWN = {
    ("cityedge.gateway.config", "cityedge.gateway.lighting.program"),
    ("cityedge.gateway.config", "cityedge.gateway.policy"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported(tree: ast.AST, here: str, is_package: bool, modules: set[str]) -> set[str]:
    """The modules of `modules` named by an import statement of `tree`, skipping
    `if TYPE_CHECKING:` bodies. `from pkg import mod` counts as importing `pkg.mod`
    (as grimp and import-linter count it); `from mod import name` as importing `mod`."""
    found: set[str] = set()
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".") if is_package else here.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
        stack.extend(ast.iter_child_nodes(node))
    return (found & modules) - {here}


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    modules = set(files)
    return {
        name: imported(
            ast.parse(path.read_text(), str(path)), name, path.name == "__init__.py", modules
        )
        for name, path in files.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through each module that is on one (breadth-first)."""
    found: dict[frozenset[str], list[str]] = {}
    for start in sorted(graph):
        paths = {start: [start]}
        frontier = [start]
        while frontier:
            nxt = []
            for node in frontier:
                for target in sorted(graph[node]):
                    if target == start:
                        ring = paths[node]
                        found.setdefault(frozenset(ring), [*ring, start])
                        frontier = []
                        nxt = []
                        break
                    if target not in paths:
                        paths[target] = [*paths[node], target]
                        nxt.append(target)
                else:
                    continue
                break
            frontier = nxt
    return sorted(found.values())


def test_the_walker_sees_lazy_imports_and_skips_type_checking() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from a import b\n"
        "def f():\n    from c import d\n"
    )
    assert imported(tree, "x", False, {"a", "a.b", "c", "c.d", "typing"}) == {"c.d", "typing"}


def test_no_import_cycle_in_gateway_and_cli() -> None:
    found = cycles(import_graph())
    new = [c for c in found if tuple(sorted(set(c))) not in KNOWN]
    assert not new, "\n".join(" -> ".join(c) for c in new)
    assert {tuple(sorted(set(c))) for c in found} == KNOWN, "a known cycle is gone: drop it"


if __name__ == "__main__":
    for ring in cycles(import_graph()):
        print(" -> ".join(ring))
