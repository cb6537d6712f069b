"""``coo mcp``: every configured MCP server, its tools and each tool's class (read / write), as /mcp shows
them, after each server answered or failed (or the connect timeout passed)."""

from __future__ import annotations

from bot.commands.mcp import describe_tools
from bot.settings import Settings
from memory.db import open_database
from prompts.messages import MCP_NONE


async def list_mcp_tools(settings: Settings) -> str:
    """The listing, read with the install's own trust pins."""
    if not settings.mcp.servers:
        return MCP_NONE
    from connectors.mcp.family import McpFamily
    from connectors.mcp.hub import McpHub
    from memory.mcp_trust import McpTrustStore

    async with open_database(settings.data_dir) as db:
        trust = McpTrustStore(db)
        await trust.setup()
        hub = McpHub(settings.mcp)
        family = McpFamily(hub, trust, settings.approvals.forbidden)
        await family.load()
        hub.start()
        try:
            await hub.wait_listed(settings.mcp.connect_timeout_s)
            return describe_tools(hub, family)
        finally:
            await hub.close()


async def check_mcp_servers(settings: Settings) -> list[tuple[str, bool, str]]:
    """For ``coo doctor``: each server reachable with its tools, or why not (name, ok, detail)."""
    if not settings.mcp.servers:
        return []
    from connectors.mcp.hub import McpHub

    hub = McpHub(settings.mcp)
    hub.start()
    try:
        await hub.wait_listed(settings.mcp.connect_timeout_s)
        return [(f"mcp {name}", state.state == "up", state.detail or state.state) for name, state in hub.states.items()]
    finally:
        await hub.close()
