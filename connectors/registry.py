"""The registry of action kinds: the one place the rest of the product asks about outward actions."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from connectors.base import Action, ActionError, ActionKind


class Registry:
    """Every action kind by name, with the model tools and slash commands that propose them."""

    def __init__(self, kinds: Iterable[ActionKind[Any]]) -> None:
        self._kinds: dict[str, ActionKind[Any]] = {}
        for kind in kinds:
            if kind.name in self._kinds:
                raise ValueError(f"action kind {kind.name} is declared twice")
            self._kinds[kind.name] = kind
        self._tools = {k.tool.name: k for k in self._kinds.values() if k.tool is not None}
        self._tool_schemas: list[dict[str, Any]] | None = None

    def __iter__(self) -> Iterator[ActionKind[Any]]:
        return iter(self._kinds.values())

    def names(self) -> list[str]:
        """Every kind's name."""
        return list(self._kinds)

    def kind(self, name: str) -> ActionKind[Any]:
        """The kind of that name; ActionError when there is none."""
        found = self._kinds.get(name)
        if found is None:
            raise ActionError(f"No connector handles {name}.")
        return found

    def parse(self, name: str, payload: dict[str, Any]) -> Action:
        """A stored action back into its model."""
        return self.kind(name).parse(payload)

    def for_tool(self, tool_name: str) -> ActionKind[Any] | None:
        """The kind a model tool proposes, if ``tool_name`` is an action tool."""
        return self._tools.get(tool_name)

    def tool_schemas(self) -> list[dict[str, Any]]:
        """OpenAI tool schemas for every configured kind the model may propose (the same list every time)."""
        if self._tool_schemas is None:
            # Built once: pydantic builds a JSON schema anew on every call (~5 % of a turn's loop CPU in
            # `python -m bench.deployed --profile DIR --profile-phase burst`).
            self._tool_schemas = self._build_tool_schemas()
        return self._tool_schemas

    def _build_tool_schemas(self) -> list[dict[str, Any]]:
        out = []
        for kind in self._tools.values():
            if not kind.configured:
                continue
            assert kind.tool is not None
            params = kind.tool.args.model_json_schema()
            params.pop("title", None)
            fn = {"name": kind.tool.name, "description": kind.tool.description, "parameters": params}
            out.append({"type": "function", "function": fn})
        return out

    def commands(self) -> list[ActionKind[Any]]:
        """Kinds with a slash command."""
        return [k for k in self._kinds.values() if k.command is not None]

    async def close(self) -> None:
        """Release every connector's connections."""
        for kind in self._kinds.values():
            await kind.close()

    def secrets(self) -> list[str]:
        """Every connector secret, to redact from logs."""
        return [s for kind in self._kinds.values() for s in kind.secrets() if s]
