"""A real runtime with the web console on a free port, a real SMTP server and a recording chat channel."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bot.messages import OutboundMessage
from bot.running import Runtime
from bot.runtime import open_runtime
from tests.bot.test_approval_flow import inbound
from tests.conftest import ManualClock, RecordingChannel, make_settings
from tests.fakes.smtp_server import SMTPServer, free_port

OPERATOR = "telegram:1001"
EMAIL = "/email ana@example.org Proposal ready | Hi Ana,\nthe proposal is ready.\nBest, Me"
LINK = re.compile(r"(http://127\.0\.0\.1:\d+/login/[A-Za-z0-9_-]+)")
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@dataclass
class Console:
    """The running product as a test sees it."""

    rt: Runtime
    chat: RecordingChannel
    smtp: SMTPServer
    base: str

    async def say(self, text: str, sender: str = OPERATOR, chat: str = "1001") -> None:
        """The operator (or a stranger) writes in the chat."""
        kind = "command" if text.startswith("/") else "message"
        await self.rt.dispatcher.handle(inbound(text, sender=sender, chat=chat, kind=kind))

    async def press(self, data: str) -> None:
        """The operator presses a card button in the chat."""
        await self.rt.dispatcher.handle(inbound(kind="callback", data=data))

    def last_card(self) -> OutboundMessage:
        return next(m for m in reversed(self.chat.sent) if m.buttons and m.edit_message_id is None)

    async def link(self) -> str:
        """A one-time link, asked for with /web in the private chat."""
        before = len(self.chat.sent)
        await self.say("/web")
        # The answer to /web, not whatever was sent last: a goal's status message may land after it.
        answers = [m.text for m in self.chat.sent[before:]]
        found = next((match for text in answers if (match := LINK.search(text))), None)
        assert found, answers
        return found.group(1)


def button(card: OutboundMessage, label: str) -> str:
    return next(b.data for b in card.buttons if b.label == label)


@asynccontextmanager
async def running(tmp_path: Path, **overrides: Any) -> AsyncIterator[Console]:
    """The product with its console on, an SMTP server, and a chat channel the operator writes in."""
    port = free_port()
    with SMTPServer() as smtp:
        settings = make_settings(
            tmp_path / "data",
            smtp=smtp.settings(),
            outbox={"backoff_base_s": 0.05, "poll_s": 0.05},
            web={"listen": f"127.0.0.1:{port}", **overrides.pop("web", {})},
            **overrides,
        )
        async with open_runtime(settings, console=False, clock=ManualClock()) as rt:
            chat = RecordingChannel("rec")
            rt.dispatcher.attach(chat)
            yield Console(rt, chat, smtp, f"http://127.0.0.1:{port}")


@asynccontextmanager
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client that keeps cookies for 127.0.0.1 and does not follow redirects by itself."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def sign_in(http: aiohttp.ClientSession, link: str) -> aiohttp.ClientResponse:
    """Open the link's page and press Sign in, as a browser would."""
    async with http.get(link) as page:
        assert page.status == 200, await page.text()
        token = re.search(r'name="token" value="([^"]+)"', await page.text())
        assert token
    async with http.post(
        link.rsplit("/login/", 1)[0] + "/login", data={"token": token.group(1)}, allow_redirects=False
    ) as done:
        return done


async def csrf_of(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as page:
        found = CSRF.search(await page.text())
        assert found
        return found.group(1)
