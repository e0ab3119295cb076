"""The layout's promises that import-linter's contracts cannot state: no import
cycle between any two modules of the product (imports inside functions count,
`if TYPE_CHECKING:` blocks do not), modules small enough to read, and every
package where the README's layout table says it is."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = (
    "cityedge.sdk",
    "cityedge.protocol",
    "cityedge.drivers",
    "cityedge.gateway",
    "cityedge.central",
    "cityedge.cli",
)
MAX_LINES = 450


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's components of `graph` (iterative: import chains run deep)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph.get(start, ())))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(sorted(component))
    return found


def test_strongly_connected_finds_a_cycle_and_only_it() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": []}
    assert sorted(map(sorted, strongly_connected(graph))) == [["a", "b", "c"], ["d"]]


def test_no_import_cycle_between_modules_of_the_product() -> None:
    graph = grimp.build_graph(*PRODUCT, exclude_type_checking_imports=True)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    cycles = [c for c in strongly_connected(edges) if len(c) > 1]
    chains = []
    for cycle in cycles:
        first, second = cycle[0], cycle[1]
        there = graph.find_shortest_chain(importer=first, imported=second)
        back = graph.find_shortest_chain(importer=second, imported=first)
        chains.append(f"{' -> '.join(there or ())} ; {' -> '.join(back or ())}")
    assert not cycles, "\n".join(chains)


def product_files() -> list[Path]:
    roots = [ROOT / "agent" / "cityedge", ROOT / "drivers" / "cityedge"]
    files = [p for r in roots for p in sorted(r.rglob("*.py"))]
    return [p for p in files if "street" not in p.relative_to(ROOT).parts]


@pytest.mark.parametrize("path", product_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_product_module_fits_on_a_reading(path: Path) -> None:
    lines = path.read_text().count("\n")
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)}: {lines} lines (at most {MAX_LINES})"


@pytest.mark.parametrize("path", product_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_product_module_says_what_it_is(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    if path.name == "__main__.py":
        return
    assert ast.get_docstring(tree), f"{path.relative_to(ROOT)}: no module docstring"


def test_nothing_generic_lands_in_site_packages() -> None:
    """The wheel's top-level names: only the distribution's own namespace."""
    tops = {p.name for p in (ROOT / "agent").iterdir() if not p.name.startswith(".")}
    tops |= {p.name for p in (ROOT / "drivers").iterdir() if not p.name.startswith(".")}
    assert tops - {"__pycache__"} <= {"cityedge"} | {p for p in tops if p.endswith(".egg-info")}
