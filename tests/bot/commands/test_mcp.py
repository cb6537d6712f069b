"""/mcp on its own, before any server answered (no server process is started here; the trust flow with live
tools runs in tests/bot/test_mcp_flow.py): the listing, bad arguments, and a trust request for a tool that
is not listed, each one clear line with nothing pinned and no confirmation asked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.commands.mcp import McpCommands, describe_tools
from bot.commands.router import CommandRouter
from bot.messenger import Messenger
from connectors.mcp.family import McpFamily
from connectors.mcp.hub import McpHub
from connectors.mcp.settings import McpSettings
from graph.errors import UserFacingError
from memory.control import ControlStore
from memory.db import open_database
from memory.mcp_trust import McpTrustStore
from prompts.messages import MCP_LEGEND, MCP_NONE, MCP_USAGE
from tests.conftest import RecordingChannel, operator_message


@dataclass
class Mcp:
    router: CommandRouter
    trust: McpTrustStore
    chat: RecordingChannel

    async def say(self, text: str) -> str:
        return await self.router.run(operator_message(text, kind="command"))


@asynccontextmanager
async def mcp_chat(tmp_path: Path, servers: bool = True) -> AsyncIterator[Mcp]:
    settings = McpSettings.model_validate({"servers": {"cal": {"url": "http://127.0.0.1:9/mcp"}}} if servers else {})
    async with open_database(tmp_path) as db:
        control, trust = ControlStore(db), McpTrustStore(db)
        await control.setup()
        await trust.setup()
        hub = McpHub(settings)  # not started: no server has listed tools yet
        family = McpFamily(hub, trust)
        await family.load()
        chat = RecordingChannel("rec")
        messenger = Messenger(db)
        messenger.attach(chat)
        router = CommandRouter()
        McpCommands(hub, family, control, messenger).register(router)
        yield Mcp(router, trust, chat)


async def test_the_listing_names_each_server_and_its_state(tmp_path: Path) -> None:
    async with mcp_chat(tmp_path) as mcp:
        listing = await mcp.say("/mcp")
    assert listing.splitlines()[0].startswith("cal (http): ")
    assert listing.endswith(MCP_LEGEND)
    assert mcp.router.is_confidential("/mcp")


async def test_without_servers_it_says_how_to_add_one(tmp_path: Path) -> None:
    async with mcp_chat(tmp_path, servers=False) as mcp:
        assert await mcp.say("/mcp") == MCP_NONE
    assert describe_tools(None, None) == MCP_NONE


@pytest.mark.parametrize("args", ["trust", "trust cal", "trust cal.create_event now", "untrust cal.x", "trust ../etc"])
async def test_bad_arguments_give_the_usage_and_ask_nothing(tmp_path: Path, args: str) -> None:
    async with mcp_chat(tmp_path) as mcp:
        with pytest.raises(UserFacingError) as refused:
            await mcp.say(f"/mcp {args}")
        assert str(refused.value) == MCP_USAGE
        assert mcp.chat.sent == [] and await mcp.trust.pins() == {}


async def test_trusting_a_tool_that_is_not_listed_is_refused_with_nothing_pinned(tmp_path: Path) -> None:
    """The server has not answered (or dropped the tool): no confirmation is asked for a tool nobody has seen."""
    async with mcp_chat(tmp_path) as mcp:
        with pytest.raises(UserFacingError) as refused:
            await mcp.say("/mcp trust cal.create_event")
        assert str(refused.value) == "No tool cal.create_event is listed right now."
        assert mcp.chat.sent == [] and await mcp.trust.pins() == {}
