"""Button prefixes: one registry, and no module keeps its own copy of one as a string."""

from __future__ import annotations

import ast
from pathlib import Path

from graph.buttons import Prefix, encode, prefix_of

ROOT = Path(__file__).resolve().parents[2]


def test_button_data_is_its_prefix_then_its_parts() -> None:
    assert encode(Prefix.GOAL, "retry", "t1") == "gl:retry:t1"
    assert prefix_of("gl:retry:t1") == Prefix.GOAL and prefix_of(None) == "" and prefix_of("plain") == "plain"


def _literals(path: Path) -> list[tuple[int, str]]:
    """String constants, and the literal start of f-strings, in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            found.append((node.lineno, str(node.values[0].value)))
    return found


def test_no_module_spells_a_button_prefix_itself() -> None:
    prefixes = {p.value for p in Prefix}
    copies = [
        f"{path.relative_to(ROOT)}:{line}: {text!r}"
        for folder in ("bot", "graph", "connectors")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path.name != "buttons.py"
        for line, text in _literals(path)
        if text in prefixes or text.split(":", 1)[0] in prefixes and ":" in text
    ]
    assert copies == []
