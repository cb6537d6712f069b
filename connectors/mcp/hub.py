"""Connections to the operator's MCP servers (the official ``mcp`` SDK), and what each offers.

Each server lives in a task of its own: it connects in the background (a server that is down or slow
delays neither the start nor a reply: its tools are simply absent until it answers), lists its tools,
follows ``tools/list_changed`` where the server streams it, and reconnects with backoff when dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError
from mcp.types import CallToolResult

from connectors.mcp.screening import screen
from connectors.mcp.settings import McpServerSettings, McpSettings
from memory.errors import InternalError

log = logging.getLogger(__name__)
_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)


class NotReached(InternalError):
    """The server is not connected: nothing was sent."""


class LostInFlight(InternalError):
    """The call was sent and no answer came back (connection lost, server died, timed out)."""


@dataclass(frozen=True)
class McpTool:
    """A tool as its server lists it. Everything but ``server`` and ``name`` is the server's own claim."""

    server: str
    name: str
    description: str
    schema: dict[str, Any]
    read_only_hint: bool
    warnings: tuple[str, ...]

    @property
    def qualified(self) -> str:
        """``server.tool``, as the operator names it."""
        return f"{self.server}.{self.name}"

    @property
    def kind_name(self) -> str:
        """The action kind of a call to it."""
        return f"mcp.{self.qualified}"

    @property
    def fingerprint(self) -> str:
        """A hash of what the server says the tool is: its description and its input schema."""
        canonical = json.dumps([self.description, self.schema], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


@dataclass
class ServerState:
    """How one server is doing, for /mcp, ``coo mcp`` and ``coo doctor``."""

    transport: str
    state: str = "connecting"
    detail: str = ""


def tool_from_listing(server: str, listed: Any) -> McpTool:
    """Our view of one listed tool (parsed at the edge; the description is screened here)."""
    description = str(listed.description or "")[:2000]
    schema = dict(listed.input_schema or {"type": "object"})
    hint = bool(listed.annotations is not None and listed.annotations.read_only_hint)
    return McpTool(server, str(listed.name), description, schema, hint, screen(description, schema))


class McpHub:
    """Every configured server: its connection, its tools, and calls to them."""

    def __init__(self, settings: McpSettings, on_change: Callable[[], None] = lambda: None) -> None:
        self._settings = settings
        self._on_change = on_change
        self._clients: dict[str, Client] = {}
        self._tools: dict[str, dict[str, McpTool]] = {name: {} for name in settings.servers}
        self.states = {name: ServerState(spec.transport) for name, spec in settings.servers.items()}
        self._tasks: list[asyncio.Task[None]] = []
        self.version = 0
        """Counts changes to the listed tools (what depends on them is rebuilt only when it moves)."""
        self._settled = {name: asyncio.Event() for name in settings.servers}

    @property
    def settings(self) -> McpSettings:
        """The servers as configured."""
        return self._settings

    def start(self) -> None:
        """Connect every server in the background (returns at once)."""
        for name, spec in self._settings.servers.items():
            self._tasks.append(asyncio.create_task(self._serve(name, spec), name=f"mcp-{name}"))

    async def wait_listed(self, timeout: float) -> None:
        """Wait until every server has listed its tools or failed once, or ``timeout`` passed (``coo mcp``)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(event.wait() for event in self._settled.values()))

    def tools(self) -> list[McpTool]:
        """Every tool of every connected server."""
        return [tool for server in self._tools.values() for tool in server.values()]

    def tool(self, server: str, name: str) -> McpTool | None:
        """One tool, if its server is connected and lists it."""
        return self._tools.get(server, {}).get(name)

    async def call(self, server: str, name: str, arguments: dict[str, Any]) -> CallToolResult:
        """Call a tool once. NotReached when nothing was sent; LostInFlight when no answer came back."""
        client = self._clients.get(server)
        if client is None:
            raise NotReached(f"the {server} tool server is not connected")
        try:
            async with asyncio.timeout(self._settings.call_timeout_s):
                return await client.call_tool(name, arguments)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise LostInFlight(f"no answer from the {server} tool server ({type(exc).__name__})") from exc

    async def close(self) -> None:
        """Stop every connection (safe to call twice)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _serve(self, name: str, spec: McpServerSettings) -> None:
        await reconnecting(
            lambda: self._session(name, spec), lambda exc: self._down(name, exc), lambda: self._forget(name)
        )

    def _down(self, name: str, exc: Exception) -> None:
        """A server's failure is its own: log it, mark it down (it is tried again later)."""
        self.states[name].state, self.states[name].detail = "down", _why(exc)
        log.warning("MCP server %s: %s", name, _why(exc))
        self._settled[name].set()

    async def _session(self, name: str, spec: McpServerSettings) -> None:
        async with contextlib.AsyncExitStack() as stack:
            async with asyncio.timeout(self._settings.connect_timeout_s):
                client = await stack.enter_async_context(_client(spec, stack))
                await self._list(name, client)
            self._clients[name] = client
            self.states[name].state, self.states[name].detail = "up", f"{len(self._tools[name])} tools"
            await self._follow(name, client)

    async def _follow(self, name: str, client: Client) -> None:
        """Re-list on every change the server announces; a server that cannot stream changes is listed at
        each connection only."""
        try:
            async with client.listen(tools_list_changed=True) as changes:
                async for _ in changes:
                    await self._list(name, client)
        except ListenNotSupportedError:
            await asyncio.Event().wait()
        raise ConnectionError("the server closed the connection")

    async def _list(self, name: str, client: Client) -> None:
        found: dict[str, McpTool] = {}
        cursor: str | None = None
        for _ in range(50):  # pages: a bound against a server that never stops paging
            page = await client.list_tools(cursor=cursor, cache_mode="refresh")
            for listed in page.tools:
                tool = tool_from_listing(name, listed)
                found[tool.name] = tool
            cursor = page.next_cursor
            if cursor is None:
                break
        self._tools[name] = found
        self.version += 1
        self._settled[name].set()
        self._on_change()

    def _forget(self, name: str) -> None:
        self._clients.pop(name, None)
        if self._tools.get(name):
            self._tools[name] = {}
            self.version += 1
            self._on_change()


def _client(spec: McpServerSettings, stack: contextlib.AsyncExitStack) -> Client:
    if spec.command:
        env = {key: value.get_secret_value() for key, value in spec.env.items()}
        target: Any = StdioServerParameters(command=spec.command, args=list(spec.args), env=env or None)
    else:
        assert spec.url is not None
        headers = {key: value.get_secret_value() for key, value in spec.headers.items()}
        http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0))
        stack.push_async_callback(http.aclose)
        target = streamable_http_client(spec.url, http_client=http)
    return Client(target, cache=None)


async def reconnecting(
    session: Callable[[], Awaitable[None]],
    failed: Callable[[Exception], None],
    ended: Callable[[], None],
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Run ``session`` again and again, with a growing pause after each one (:data:`_BACKOFF_S`): ``failed`` is
    told of a failure, ``ended`` of every session's end. It ends only when its task is cancelled (``close()``),
    however the session hands that cancellation back (see :func:`_stop_if_closing`)."""
    attempt = 0
    while True:
        try:
            await session()
            attempt = 0
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _stop_if_closing()
            failed(exc)
        finally:
            ended()
        _stop_if_closing()
        await sleep(_BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)])
        attempt += 1


def _stop_if_closing() -> None:
    """End the serving task when ``close()`` cancelled it, even if the client library turned that
    cancellation into another error or a quiet return on its way out: otherwise the task would go on
    reconnecting and ``close()`` (and with it ``coo doctor``, ``coo mcp`` or a stop) would wait forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def result_text(result: CallToolResult) -> str:
    """The text blocks of a tool's result, joined."""
    parts = [str(getattr(block, "text", "")) for block in result.content or [] if getattr(block, "type", "") == "text"]
    return "\n".join(p for p in parts if p).strip()


def _why(exc: BaseException) -> str:
    """A short reason without the server's own words (they may carry secrets or instructions)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, OSError):
        return f"cannot start or reach it ({type(exc).__name__})"
    if "connect" in type(exc).__name__.lower():
        return f"cannot reach it ({type(exc).__name__})"
    return f"connection failed ({type(exc).__name__})"
