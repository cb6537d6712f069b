"""The registry of action kinds: the one place the rest of the product asks about outward actions."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from connectors.base import Action, ActionError, ActionKind, ReadTool


class KindFamily(Protocol):
    """Kinds declared at run time under one name prefix (the tools of MCP servers): each knows its kinds
    by name (also ones not offered right now, for stored cards), which the model may propose now, and
    the reads it may run without a card."""

    prefix: str

    @property
    def version(self) -> object:
        """Moves whenever what it offers changes."""
        ...

    def kind(self, name: str) -> ActionKind[Any] | None: ...

    def tool_kinds(self) -> Sequence[ActionKind[Any]]: ...

    def read_tools(self) -> Sequence[ReadTool]: ...

    def secrets(self) -> list[str]: ...

    async def close(self) -> None: ...


class Registry:
    """Every action kind by name, with the model tools and slash commands that propose them."""

    def __init__(self, kinds: Iterable[ActionKind[Any]], families: Sequence[KindFamily] = ()) -> None:
        self._families = tuple(families)
        self._kinds: dict[str, ActionKind[Any]] = {}
        for kind in kinds:
            if kind.name in self._kinds:
                raise ValueError(f"action kind {kind.name} is declared twice")
            self._kinds[kind.name] = kind
        self._tools = {k.tool.name: k for k in self._kinds.values() if k.tool is not None}
        self._tool_schemas: list[dict[str, Any]] | None = None
        self._family_schemas: tuple[tuple[object, ...], list[dict[str, Any]]] | None = None

    def __iter__(self) -> Iterator[ActionKind[Any]]:
        return iter(self._kinds.values())

    def names(self) -> list[str]:
        """Every kind's name."""
        return list(self._kinds)

    def kind(self, name: str) -> ActionKind[Any]:
        """The kind of that name; ActionError when there is none."""
        found = self._kinds.get(name) or self._family_kind(name)
        if found is None:
            raise ActionError(f"No connector handles {name}.")
        return found

    def _family_kind(self, name: str) -> ActionKind[Any] | None:
        family = next((f for f in self._families if name.startswith(f.prefix)), None)
        return family.kind(name) if family else None

    def parse(self, name: str, payload: dict[str, Any]) -> Action:
        """A stored action back into its model."""
        return self.kind(name).parse(payload)

    def for_tool(self, tool_name: str) -> ActionKind[Any] | None:
        """The kind a model tool proposes, if ``tool_name`` is an action tool."""
        found = self._tools.get(tool_name)
        if found is None:
            offered = (k for f in self._families for k in f.tool_kinds())
            found = next((k for k in offered if k.tool is not None and k.tool.name == tool_name), None)
        return found

    def tool_schemas(self) -> list[dict[str, Any]]:
        """OpenAI tool schemas for every configured kind the model may propose (the same list every time)."""
        if self._tool_schemas is None:
            # Built once: pydantic builds a JSON schema anew on every call (~5 % of a turn's loop CPU in
            # `python -m bench.deployed --profile DIR --profile-phase burst`).
            self._tool_schemas = _schemas(self._tools.values())
        if not self._families:
            return self._tool_schemas
        # Run-time kinds come and go with their servers: listed anew when a family's version moves (asked on
        # every model call; a hundred MCP tools cost milliseconds to list and clean).
        versions = tuple(f.version for f in self._families)
        if self._family_schemas is None or self._family_schemas[0] != versions:
            self._family_schemas = (versions, _schemas(k for f in self._families for k in f.tool_kinds()))
        return [*self._tool_schemas, *self._family_schemas[1]]

    def tool_names(self) -> list[str]:
        """The model tool of every kind declared at start, configured or not."""
        return list(self._tools)

    def read_tools(self) -> list[ReadTool]:
        """Reads the model may run without a card right now (tools the operator trusts)."""
        return [tool for family in self._families for tool in family.read_tools()]

    def commands(self) -> list[ActionKind[Any]]:
        """Kinds with a slash command."""
        return [k for k in self._kinds.values() if k.command is not None]

    async def close(self) -> None:
        """Release every connector's connections."""
        for kind in self._kinds.values():
            await kind.close()
        for family in self._families:
            await family.close()

    def secrets(self) -> list[str]:
        """Every connector secret, to redact from logs."""
        found = [s for kind in self._kinds.values() for s in kind.secrets() if s]
        return found + [s for family in self._families for s in family.secrets() if s]


def _schemas(kinds: Iterable[ActionKind[Any]]) -> list[dict[str, Any]]:
    out = []
    for kind in kinds:
        if not kind.configured or kind.tool is None:
            continue
        params = kind.tool.parameters or kind.tool.args.model_json_schema()
        params = {k: v for k, v in params.items() if k != "title"}
        fn = {"name": kind.tool.name, "description": kind.tool.description, "parameters": params}
        out.append({"type": "function", "function": fn})
    return out
