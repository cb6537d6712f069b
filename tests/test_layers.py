"""The layering of ARCHITECTURE.md, read from the code's own imports (every import, function-local ones too:
a lazy import that dodges a circle is still a circle)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.layout import PACKAGES, ROOT

CHANNEL_LIBRARIES = ("telegram", "slack_bolt", "slack_sdk")
# What graph/ may take from connectors/: the contract, the registry and the circuit breaker (the one outage
# mechanism the model client shares with the outbox), never a connector's internals.
CONNECTOR_CONTRACT = ("connectors.base", "connectors.registry", "connectors.breaker")
# Crossings that exist today and are to go (issue "The house"). The list may only shrink: a new crossing
# fails the test, and so does an entry that no longer crosses.
KNOWN_CROSSINGS: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path, module: str) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path, name):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(f"{imported}."):
                targets.add(imported)
        edges[name] = targets
    return edges


def _external(path: Path, module: str) -> set[str]:
    return {imported.split(".")[0] for imported in _imports(path, module)}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _layer(module: str) -> str:
    return module.split(".")[0]


def _crossings(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    forbidden = {
        "memory": {"bot", "graph", "connectors"},
        "connectors": {"bot", "graph"},
        "graph": {"bot"},
        "prompts": {"bot", "graph", "memory", "connectors"},
    }
    bad = set()
    for source, targets in edges.items():
        for target in targets:
            if _layer(target) in forbidden.get(_layer(source), set()):
                bad.add((source, target))
            if _layer(source) == "graph" and _layer(target) == "connectors" and target not in CONNECTOR_CONTRACT:
                bad.add((source, target))
    return bad


def test_no_module_imports_itself_back_through_others() -> None:
    assert _cycles(_graph()) == []


def test_imports_run_down_the_layers_only() -> None:
    crossings = _crossings(_graph())
    assert crossings - KNOWN_CROSSINGS == set(), "new imports against the layering"
    assert KNOWN_CROSSINGS - crossings == set(), "fixed crossings: remove them from KNOWN_CROSSINGS"


def test_channel_libraries_live_in_the_channel_adapters_only() -> None:
    outside = sorted(
        name
        for name, path in _modules().items()
        if not name.startswith("bot.channels") and _external(path, name) & set(CHANNEL_LIBRARIES)
    )
    assert outside == []


def test_the_checks_see_a_circle_and_a_crossing() -> None:
    """The checks themselves can fail: a made-up circle and a made-up crossing are found."""
    edges = {"memory.a": {"connectors.b"}, "connectors.b": {"memory.a"}, "graph.c": {"connectors.email"}}
    assert _cycles(edges) == [["connectors.b", "memory.a"]]
    assert _crossings(edges) == {("memory.a", "connectors.b"), ("graph.c", "connectors.email")}
