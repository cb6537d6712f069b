"""What the connector tests share: a hub connected to a real MCP server (the official SDK) in its own process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connectors.mcp.hub import McpHub
from connectors.mcp.settings import McpSettings
from tests.fakes.mcp_servers import stdio_command


async def connected_hub(variant: str, state: Path, **settings: Any) -> McpHub:
    """A started hub whose server ``cal`` is ``tests/fakes/mcp_servers.py VARIANT STATE`` and is up; the caller
    closes it. ``settings`` are more McpSettings fields (read_only, result_chars)."""
    servers = {"cal": stdio_command(variant, state)}
    hub = McpHub(McpSettings.model_validate({"servers": servers, "call_timeout_s": 5, **settings}))
    hub.start()
    await hub.wait_listed(30)
    assert hub.states["cal"].state == "up"
    return hub
