"""``coo mcp`` and the MCP lines of ``coo doctor`` on their own: no servers is said plainly; a server that
cannot be reached is listed as down with why, and the doctor's check fails for it, without hanging."""

from __future__ import annotations

from pathlib import Path

from bot.mcp_cli import check_mcp_servers, list_mcp_tools
from prompts.messages import MCP_LEGEND, MCP_NONE
from tests.conftest import make_settings
from tests.fakes.smtp_server import free_port


async def test_without_servers_both_say_so(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert await list_mcp_tools(settings) == MCP_NONE
    assert await check_mcp_servers(settings) == []


def unreachable(tmp_path: Path) -> object:
    dead = f"http://127.0.0.1:{free_port()}/mcp"  # nothing listens there
    return make_settings(tmp_path, mcp={"servers": {"cal": {"url": dead}}, "connect_timeout_s": 10})


async def test_an_unreachable_server_is_listed_as_down(tmp_path: Path) -> None:
    listing = await list_mcp_tools(unreachable(tmp_path))  # type: ignore[arg-type]
    assert listing == f"cal (http): down, cannot reach it (ConnectError)\n\n{MCP_LEGEND}"


async def test_the_doctor_fails_an_unreachable_server(tmp_path: Path) -> None:
    [(name, ok, detail)] = await check_mcp_servers(unreachable(tmp_path))  # type: ignore[arg-type]
    assert (name, ok, detail) == ("mcp cal", False, "cannot reach it (ConnectError)")
