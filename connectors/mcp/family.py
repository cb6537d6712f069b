"""The MCP tools as the rest of the product sees them: which are reads the operator trusts (offered to the
model, run without a card, their results quoted as outside data) and which are writes (action kinds
``mcp.<server>.<tool>``, each call a card). Nothing a server says can move a tool from write to read: only
COO_MCP__READ_ONLY and a confirmed /mcp trust do, pinned to the tool's fingerprint."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from connectors.base import ActionError, ReadTool
from connectors.mcp.hub import LostInFlight, McpHub, McpTool, NotReached, result_text
from connectors.mcp.kind import McpToolKind, check_arguments, model_tool_name
from connectors.mcp.settings import KIND_PATTERN
from memory.mcp_trust import McpTrustStore, TrustPin

log = logging.getLogger(__name__)

ToolClassName = Literal["read", "write"]


@dataclass(frozen=True)
class ToolClass:
    """A tool, its class, and why (for /mcp and ``coo mcp``)."""

    tool: McpTool
    cls: ToolClassName
    why: str


class McpFamily:
    """The ``mcp.`` kinds and the trusted read tools, over a hub and the operator's pins."""

    prefix = "mcp."

    def __init__(self, hub: McpHub, trust: McpTrustStore, forbidden: Collection[str] = ()) -> None:
        self._hub = hub
        self._trust = trust
        self._forbidden = frozenset(forbidden)
        self._pins: dict[str, TrustPin] = {}
        self._pinned = 0  # counts pin changes, for ``version``
        self._offered: tuple[tuple[int, int], list[McpToolKind], list[ReadTool]] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def hub(self) -> McpHub:
        """The connections behind these tools."""
        return self._hub

    async def load(self) -> None:
        """Read the pins (before the hub starts)."""
        self._pins = await self._trust.pins()

    def classify(self, tool: McpTool) -> ToolClass:
        """Read only when the operator trusted this exact tool and nothing about it looks aimed at the model."""
        pin = self._pins.get(tool.qualified)
        if tool.warnings:
            return ToolClass(tool, "write", "flagged: " + "; ".join(tool.warnings))
        if tool.qualified in self._settings_read_only and pin is None:
            self._pin_later(tool, "config", "config")
            return ToolClass(tool, "read", "trusted in COO_MCP__READ_ONLY")
        if pin is None:
            hint = " (its server suggests read-only: /mcp trust to agree)" if tool.read_only_hint else ""
            return ToolClass(tool, "write", "not trusted" + hint)
        if pin.fingerprint != tool.fingerprint:
            return ToolClass(tool, "write", "changed since it was trusted: /mcp trust again to trust it")
        return ToolClass(tool, "read", "trusted by you" if pin.source == "command" else "trusted in COO_MCP__READ_ONLY")

    def classes(self) -> list[ToolClass]:
        """Every listed tool with its class."""
        return [self.classify(tool) for tool in self._hub.tools() if self._allowed(tool)]

    def kind(self, name: str) -> McpToolKind | None:
        """The kind of a call to ``name`` (``mcp.<server>.<tool>``), also for a tool not listed right now."""
        match = KIND_PATTERN.match(name)
        if match is None or match.group(1) not in self._hub.settings.servers:
            return None
        server, tool_name = match.groups()
        return McpToolKind(self._hub, server, tool_name, self._hub.tool(server, tool_name))

    @property
    def version(self) -> tuple[int, int]:
        """Moves whenever a server's tools or a trust pin change."""
        return (self._hub.version, self._pinned)

    def tool_kinds(self) -> list[McpToolKind]:
        """The write tools the model may propose right now (forbidden ones are never offered)."""
        return self._current()[1]

    def read_tools(self) -> list[ReadTool]:
        """The trusted reads the model may call right now."""
        return self._current()[2]

    def _current(self) -> tuple[tuple[int, int], list[McpToolKind], list[ReadTool]]:
        """What is offered, built again only when the tools or the pins changed (it is asked on every model call)."""
        if self._offered is None or self._offered[0] != self.version:
            classes = self.classes()  # may pin configured tools at first sight: the version is read after
            writes = [McpToolKind(self._hub, c.tool.server, c.tool.name, c.tool) for c in classes if c.cls == "write"]
            reads = [self._read_tool(c.tool) for c in classes if c.cls == "read"]
            self._offered = (self.version, writes, reads)
        return self._offered

    def tool_for_trust(self, qualified: str) -> McpTool:
        """The tool the operator asks to trust; ActionError when it is not listed, forbidden or flagged."""
        server, _, name = qualified.partition(".")
        tool = self._hub.tool(server, name)
        if tool is None or not self._allowed(tool):
            raise ActionError(f"No tool {qualified} is listed right now.")
        if tool.warnings:
            raise ActionError(f"{qualified} is flagged ({'; '.join(tool.warnings)}) and stays a write.")
        return tool

    async def trust(self, qualified: str, fingerprint: str, trusted_by: str) -> None:
        """Pin ``server.tool`` as the operator saw it when asked (``fingerprint``); ActionError when it has
        changed since, is no longer listed, or is flagged."""
        tool = self.tool_for_trust(qualified)
        if tool.fingerprint != fingerprint:
            raise ActionError(f"{qualified} changed since you were asked; nothing changed. Ask again with /mcp.")
        await self._trust.pin(qualified, fingerprint, "command", trusted_by)
        self._pins[qualified] = TrustPin(qualified, fingerprint, "command", trusted_by)
        self._pinned += 1

    def secrets(self) -> list[str]:
        """Secrets of every server (env and headers)."""
        return self._hub.settings.secrets()

    async def close(self) -> None:
        """Stop every server connection."""
        await self._hub.close()

    @property
    def _settings_read_only(self) -> frozenset[str]:
        return frozenset(self._hub.settings.read_only)

    def _allowed(self, tool: McpTool) -> bool:
        return tool.kind_name not in self._forbidden

    def _pin_later(self, tool: McpTool, source: str, by: str) -> None:
        """Pin a configured read-only tool at first sight (held in memory at once, stored in the background)."""
        self._pins[tool.qualified] = TrustPin(tool.qualified, tool.fingerprint, source, by)
        self._pinned += 1
        task = asyncio.get_running_loop().create_task(self._trust.pin(tool.qualified, tool.fingerprint, source, by))
        self._pending.add(task)
        task.add_done_callback(self._stored)

    def _stored(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("an MCP trust pin could not be stored", exc_info=task.exception())

    def _read_tool(self, tool: McpTool) -> ReadTool:
        async def run(arguments: dict[str, Any]) -> str:
            check_arguments(arguments, tool.schema)
            current = self._hub.tool(tool.server, tool.name)
            if current is None or self.classify(current).cls != "read":
                raise ActionError(f"{tool.qualified} is not a trusted read any more.")
            try:
                result = await self._hub.call(tool.server, tool.name, arguments)
            except (NotReached, LostInFlight) as exc:
                raise ActionError(str(exc)) from None
            text = result_text(result) or json.dumps(result.structured_content or {}, ensure_ascii=False)
            limit = self._hub.settings.result_chars
            clipped = text[:limit] + (" [cut]" if len(text) > limit else "")
            return ("error from the tool: " if result.is_error else "") + clipped

        parameters = {k: v for k, v in tool.schema.items() if k != "title"}
        description = f"Read from the operator's {tool.server} server (described by it as: {tool.description[:300]!r})"
        origin = f"MCP server {tool.server}, tool {tool.name}"
        return ReadTool(model_tool_name(tool), description, parameters, origin, run, key=tool.qualified)
