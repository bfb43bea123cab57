"""The import graph as import-linter counts it (imports inside functions and under
TYPE_CHECKING too): no circles anywhere, and the pure core imports only the error tree.
The layers themselves are `lint-imports`' contract in pyproject.toml, run by CI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import grimp


class _Graph(Protocol):
    @property
    def modules(self) -> set[str]: ...

    def find_modules_directly_imported_by(self, module: str) -> set[str]: ...


def _cycles(graph: _Graph) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(component)

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_through_others() -> None:
    assert _cycles(grimp.build_graph("sync")) == []


@dataclass
class _Edges:
    imports: dict[str, set[str]]

    @property
    def modules(self) -> set[str]:
        return set(self.imports)

    def find_modules_directly_imported_by(self, module: str) -> set[str]:
        return self.imports[module]


def test_the_cycle_finder_sees_a_circle() -> None:
    graph = _Edges({"a": set(), "a.b": {"a.c"}, "a.c": {"a.b"}, "a.d": {"a.b"}})
    assert _cycles(graph) == [{"a.b", "a.c"}]


def test_the_core_imports_nothing_of_sync_but_the_error_tree() -> None:
    graph = grimp.build_graph("sync")
    core = {m for m in graph.modules if m.startswith("sync.core")}
    imported = {d for m in core for d in graph.find_modules_directly_imported_by(m)}
    assert imported - core == {"sync.errors"}
