"""The console's services as ``build_web`` gathers them from the runtime's parts (here built directly on
tests/bot/chat_parts.py): ``/web`` hands out a link the console's own sign-in store accepts, only in a private
chat, and what the approval services say to a console press reaches the console's page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.access import AccessGuard
from bot.messages import OutboundMessage
from bot.web.server import WebConsole
from bot.web.wiring import WebParts, build_web
from graph.errors import UserFacingError
from prompts.messages import WEB_PRIVATE_ONLY
from tests.bot.chat_parts import Chat, chat_parts
from tests.fakes.openai_api import FakeOpenAI
from tests.graph.parts import OPERATOR

LINK = re.compile(r"https?://\S+/login/([A-Za-z0-9_-]+)")


@dataclass
class Built:
    chat: Chat
    console: WebConsole

    async def links(self) -> int:
        return int((await self.chat.parts.stores.db.fetchone("SELECT COUNT(*) FROM web_links"))[0])


@pytest.fixture
async def built(tmp_path: Path, fake_llm: FakeOpenAI) -> AsyncIterator[Built]:
    async with chat_parts(tmp_path, fake_llm, web={"listen": "127.0.0.1:8099"}) as chat:
        p = chat.parts
        parts = WebParts(
            p.stores.db, p.stores.ledger, p.stores.control, p.stores.tasks, p.approvals, chat.ui, p.goals,
            AccessGuard(frozenset({OPERATOR}), p.stores.operators), lambda: chat.wakes.append(None),
        )  # fmt: skip
        yield Built(chat, await build_web(p.settings, parts, chat.messenger, chat.router))


async def test_web_in_the_private_chat_gives_a_link_the_console_signs_in_with(built: Built) -> None:
    said = await built.chat.say("/web")
    found = LINK.search(said)
    assert found is not None and said.startswith("Your web console: http://127.0.0.1:8099/login/")
    async with TestClient(TestServer(built.console.app())) as client:
        signed = await client.post("/login", data={"token": found.group(1)}, allow_redirects=False)
        assert signed.status == 303


async def test_web_outside_the_private_chat_gives_no_link(built: Built) -> None:
    with pytest.raises(UserFacingError) as refused:
        await built.chat.say("/web", chat="-500")
    assert str(refused.value) == WEB_PRIVATE_ONLY and await built.links() == 0


async def test_what_is_said_to_the_console_is_kept_for_its_page(built: Built) -> None:
    await built.chat.messenger.send(OutboundMessage("web", OPERATOR, "Already decided: approved."))
    assert built.console.services.channel.take(OPERATOR) == ["Already decided: approved."]
    assert built.console.services.channel.take(OPERATOR) == []  # shown once
