"""The MCP family on its own: real MCP servers (the official SDK, each in its own process), the trust pins in
real SQLite. A tool is a read only when the operator trusted exactly that tool; nothing a server says or
changes makes it one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from connectors.base import ActionError, ReadTool
from connectors.mcp.family import McpFamily
from connectors.mcp.hub import McpHub
from memory.db import open_database
from memory.mcp_trust import McpTrustStore
from tests.connectors.conftest import connected_hub
from tests.fakes.polling import eventually, eventually_async

LIST, CREATE = "mcp.cal.list_events", "mcp.cal.create_event"


@asynccontextmanager
async def family(
    tmp_path: Path, variant: str = "calendar", forbidden: tuple[str, ...] = (), **settings: Any
) -> AsyncIterator[tuple[McpFamily, McpTrustStore, Path]]:
    """A loaded family over a hub to the ``variant`` server; the server writes its calls under ``state``."""
    state = tmp_path / "server"
    async with open_database(tmp_path) as db:
        trust = McpTrustStore(db)
        await trust.setup()
        hub: McpHub = await connected_hub(variant, state, **settings)
        found = McpFamily(hub, trust, forbidden)
        await found.load()
        try:
            yield found, trust, state
        finally:
            await found.close()


def classes(found: McpFamily) -> dict[str, tuple[str, str]]:
    return {c.tool.kind_name: (c.cls, c.why) for c in found.classes()}


def calls(state: Path) -> list[dict[str, Any]]:
    path = state / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def only_read(found: McpFamily) -> ReadTool:
    (read,) = found.read_tools()
    return read


async def test_tools_are_writes_until_the_operator_trusts_one_and_the_pin_is_kept(tmp_path: Path) -> None:
    async with family(tmp_path) as (found, trust, state):
        assert classes(found) == {
            LIST: ("write", "not trusted (its server suggests read-only: /mcp trust to agree)"),
            CREATE: ("write", "not trusted"),
        }
        assert {k.name for k in found.tool_kinds()} == {LIST, CREATE} and found.read_tools() == []
        before = found.version
        listed = found.tool_for_trust("cal.list_events")
        await found.trust("cal.list_events", listed.fingerprint, "telegram:1001")
        assert found.version != before  # what the model is offered is built again
        assert [k.name for k in found.tool_kinds()] == [CREATE]
        read = only_read(found)
        assert read.origin == "MCP server cal, tool list_events"
        assert (
            await read.run({"day": "2026-12-01"}) == "2026-12-01: 10:00 Standup with Ana; 15:00 Call with Orbit Coffee"
        )
        assert calls(state) == [{"tool": "list_events", "arguments": {"day": "2026-12-01"}}]
        assert (await trust.pins())["cal.list_events"].trusted_by == "telegram:1001"
        # A call to a tool not listed now (a stored card's) still has its kind; another prefix has none.
        assert found.kind("mcp.cal.archived_tool") is not None and found.kind("mcp.other.list_events") is None


async def test_a_trust_that_does_not_match_what_was_shown_changes_nothing(tmp_path: Path) -> None:
    async with family(tmp_path) as (found, trust, _):
        with pytest.raises(ActionError, match="changed since you were asked; nothing changed"):
            await found.trust("cal.list_events", "0" * 16, "telegram:1001")
        with pytest.raises(ActionError, match="No tool cal.delete_everything is listed right now"):
            await found.trust("cal.delete_everything", "0" * 16, "telegram:1001")
        assert await trust.pins() == {} and found.read_tools() == []


async def test_a_trusted_read_checks_its_arguments_before_the_server_is_called(tmp_path: Path) -> None:
    async with family(tmp_path, read_only=("cal.list_events",)) as (found, trust, state):
        read = only_read(found)
        with pytest.raises(ActionError, match="day"):
            await read.run({"day": 20261201})
        assert calls(state) == []
        # Trusted by the configuration: pinned to what the tool is now, stored in the background.
        await eventually_async(lambda: _pinned(trust, "cal.list_events"), timeout=10, what="the config pin")
        assert (await trust.pins())["cal.list_events"].source == "config"


async def _pinned(trust: McpTrustStore, tool: str) -> bool:
    return tool in await trust.pins()


async def test_a_tool_that_changes_after_it_was_trusted_is_a_write_again(tmp_path: Path) -> None:
    async with family(tmp_path, "rugpull", read_only=("cal.list_events",)) as (found, _, _state):
        read = only_read(found)
        hub = found.hub
        listed = hub.version
        await hub.call("cal", "flip", {})  # the server changes list_events' description
        await eventually(lambda: hub.version != listed, timeout=10, what="the new listing")
        assert classes(found)[LIST] == ("write", "changed since it was trusted: /mcp trust again to trust it")
        assert found.read_tools() == [] and LIST in {k.name for k in found.tool_kinds()}
        with pytest.raises(ActionError, match="not a trusted read any more"):
            await read.run({"day": "2026-12-01"})  # a model turn holding the old tool gets no read


async def test_a_description_aimed_at_the_model_stays_a_write_and_cannot_be_trusted(tmp_path: Path) -> None:
    async with family(tmp_path, "poisoned", forbidden=(CREATE,), read_only=("cal.list_events",)) as (found, t, _):
        cls, why = classes(found)[LIST]
        assert cls == "write" and why.startswith("flagged: ")
        with pytest.raises(ActionError, match="is flagged"):
            found.tool_for_trust("cal.list_events")
        # A forbidden tool is never offered, nor listed for trust.
        assert CREATE not in classes(found) and [k.name for k in found.tool_kinds()] == [LIST]
        with pytest.raises(ActionError, match="is listed right now"):
            found.tool_for_trust("cal.create_event")
        assert found.read_tools() == [] and await t.pins() == {}
