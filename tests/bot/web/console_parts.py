"""The console's app built directly (no runtime, no listening socket): ``WebConsole.app()`` on the real services of
tests/bot/chat_parts.py (stores on SQLite, the approval UI, the goal service), served by aiohttp's test server,
with one signed-in operator's cookie and CSRF token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from bot.access import AccessGuard
from bot.messages import InboundMessage
from bot.web.auth import COOKIE, csrf_token
from bot.web.channel import WebChannel
from bot.web.server import WebConsole
from bot.web.services import Services
from bot.web.views import Views
from memory.db import utcnow
from memory.followups import FollowupStore
from memory.traces import TraceStore
from memory.web_sessions import WebAuthStore
from tests.bot.chat_parts import SMTP, Chat, chat_parts
from tests.fakes.openai_api import FakeOpenAI
from tests.graph.parts import OPERATOR


@dataclass
class Web:
    """The console as a signed-in operator's browser sees it, and the parts behind it."""

    chat: Chat
    services: Services
    console: WebConsole
    client: TestClient[web.Request, web.Application]
    token: str
    forgotten: list[str] = field(default_factory=list)

    @property
    def cookie(self) -> dict[str, str]:
        return {"Cookie": f"{COOKIE}={self.token}"}

    async def get(self, path: str, **params: str) -> ClientResponse:
        return await self.client.get(path, params=params, headers=self.cookie, allow_redirects=False)

    async def post(self, path: str, **form: str) -> ClientResponse:
        """A form as the page posts it (with this session's CSRF token); redirects are not followed."""
        data = {"csrf": csrf_token(self.token), **form}
        return await self.client.post(path, data=data, headers=self.cookie, allow_redirects=False)

    async def events(self, kind: str) -> list[dict[str, Any]]:
        return [e.payload for e in await self.chat.parts.stores.db.events(kind)]


async def session_token(auth: WebAuthStore, operator: str = OPERATOR) -> str:
    """A session cookie value, made the way the console makes one (a link, redeemed once)."""
    redeemed = await auth.redeem(await auth.create_link(operator, timedelta(minutes=10), "test"), timedelta(hours=1))
    assert redeemed is not None
    return redeemed[1]


@asynccontextmanager
async def console_parts(
    tmp_path: Path, fake: FakeOpenAI, forget: bool = False, clock: Callable[[], datetime] = utcnow
) -> AsyncIterator[Web]:
    """The console on real parts, sign-ins expiring by ``clock``; ``forget``: a ``/forget`` command is registered
    (it records its argument; the real one needs semantic memory, tested in tests/bot/commands/test_memory.py)."""
    async with chat_parts(tmp_path, fake, smtp=SMTP, web={"listen": "127.0.0.1:8099"}) as chat:
        p, db = chat.parts, chat.parts.stores.db
        auth, traces, channel = WebAuthStore(db, clock), TraceStore(db), WebChannel()
        for store in (auth, traces, FollowupStore(db)):  # Today lists the follow-ups due
            await store.setup()
        chat.messenger.attach(channel)
        forgotten: list[str] = []

        async def forget_command(_: InboundMessage, args: str) -> str:
            forgotten.append(args)
            return f"Forgot {args}."

        if forget:
            chat.router.add("forget", "Forget a note", forget_command)
        views = Views(db, p.approvals, p.stores.ledger, p.stores.control, p.stores.tasks, "UTC", "EUR", traces)
        guard = AccessGuard(frozenset({OPERATOR}), p.stores.operators)
        services = Services(
            views, chat.ui, p.goals, guard, auth, channel, lambda: chat.wakes.append(None), chat.router,
            p.stores.records, p.stores.notes,
        )  # fmt: skip
        console = WebConsole(p.settings.web, services)
        async with TestClient(TestServer(console.app())) as client:
            yield Web(chat, services, console, client, await session_token(auth), forgotten)
