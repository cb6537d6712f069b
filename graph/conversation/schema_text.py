"""Schemas and schema errors as a model reads them best: no titles or class docstrings, no ``$defs`` to chase,
no ``additionalProperties: false`` (extra fields are ignored on input, not refused), and errors as
``field: problem`` (no pydantic URLs, no input echoed back)."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import ValidationError

_NOISE = ("title",)


def clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with ``$ref`` inlined from ``$defs`` and titles dropped (a copy; ``schema`` is left alone).
    The top-level description (a class docstring) goes too; field descriptions stay."""
    defs = schema.get("$defs", {})

    def walk(node: Any, depth: int) -> Any:
        if isinstance(node, list):
            return [walk(item, depth) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and depth < 8:
            target = copy.deepcopy(defs.get(ref.removeprefix("#/$defs/"), {}))
            target.pop("description", None)  # the referenced class's docstring
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return walk(merged, depth + 1)
        return {
            key: walk(value, depth) if key != "properties" else {k: walk(v, depth) for k, v in value.items()}
            for key, value in node.items()
            if key not in _NOISE and key != "$defs" and not (key == "additionalProperties" and value is False)
        }

    cleaned: dict[str, Any] = walk(schema, 0)
    cleaned.pop("description", None)
    return cleaned


def field_errors(exc: ValidationError, limit: int = 6) -> str:
    """``field: problem; field: problem`` for the first ``limit`` errors."""
    errors = [e for e in exc.errors() if not _misleading(e, exc.errors())]
    parts = []
    for error in errors[:limit]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "arguments"
        problem = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
        parts.append(f"{where}: {problem}")
    more = len(errors) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _misleading(error: Any, errors: list[Any]) -> bool:
    """ "tasks: should have at least 1 item" next to errors inside the tasks (their items failed, so none counted):
    it makes a model add tasks instead of fixing them."""
    loc = tuple(error.get("loc", ()))
    return (
        error.get("type") == "too_short"
        and len(loc) == 1
        and any(e["loc"][:1] == loc and len(e["loc"]) > 1 for e in errors)
    )


class CleanTools:
    """Function-tool schemas with :func:`clean_schema` parameters, each cleaned once while its schema object is
    the same (the registry keeps its schemas; a schema listed anew is cleaned anew, and the memo is bounded)."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._memo: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}

    def __call__(self, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``tools`` with each function's parameters cleaned."""
        return [self._one(tool) for tool in tools]

    def _one(self, tool: dict[str, Any]) -> dict[str, Any]:
        # Keyed by identity, and the source is kept with its copy so its id cannot be reused while memoised.
        hit = self._memo.get(id(tool))
        if hit is not None and hit[0] is tool:
            return hit[1]
        fn = tool.get("function", {})
        cleaned = {**tool, "function": {**fn, "parameters": clean_schema(fn.get("parameters", {}))}}
        if len(self._memo) >= self._size:
            self._memo.clear()
        self._memo[id(tool)] = (tool, cleaned)
        return cleaned
