"""python-telegram-bot on the aiohttp transport: bodies as the Bot API expects them, PTB's errors for failures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import NetworkError, RetryAfter, TimedOut

from bot.channels.aiohttp_request import AiohttpRequest
from tests.fakes.serving import serve

TOKEN = "123:abc"
ME = {"id": 1, "is_bot": True, "first_name": "coo", "username": "coo_bot"}
SENT = {"message_id": 7, "date": 1700000000, "chat": {"id": 1001, "type": "private"}, "text": "hi"}
DOCUMENT = {"file_id": "f", "file_unique_id": "u"}
TOO_MANY = {"ok": False, "error_code": 429, "description": "Too Many Requests", "parameters": {"retry_after": 3}}


@dataclass
class BotApi:
    """A Bot API that records what it got; ``mode`` scripts its next answer to sendMessage."""

    mode: str = "ok"
    forms: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_elsewhere(self, request: web.Request) -> web.StreamResponse:
        self.forms.append({"elsewhere": dict(await request.post())})
        return web.json_response({"ok": True, "result": SENT})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        if method == "getMe":
            return web.json_response({"ok": True, "result": ME})
        if request.content_type.startswith("multipart/"):
            form: dict[str, Any] = {}
            async for part in await request.multipart():
                form[part.name or ""] = (part.filename, await part.read()) if part.filename else await part.text()
        else:
            form = dict(await request.post())
        self.forms.append(form)
        if self.mode == "hang":
            await self.release.wait()
        if self.mode == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if self.mode == "redirect":
            raise web.HTTPTemporaryRedirect("/elsewhere")  # 307: a follower would POST the body again
        if self.mode == "429":
            return web.json_response(TOO_MANY, status=429)
        if method == "sendDocument":
            return web.json_response({"ok": True, "result": {**SENT, "document": DOCUMENT}})
        return web.json_response({"ok": True, "result": SENT})


@pytest.fixture
async def api() -> AsyncIterator[tuple[BotApi, str]]:
    fake = BotApi()
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", fake.handle)
    app.router.add_post("/elsewhere", fake.handle_elsewhere)
    runner, port = await serve(app)
    try:
        yield fake, f"http://127.0.0.1:{port}/bot"
    finally:
        fake.release.set()
        await runner.cleanup()


async def test_fields_arrive_form_encoded_with_nested_values_as_json(api: tuple[BotApi, str]) -> None:
    fake, base = api
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Approve", callback_data="a:1")]])
    async with Bot(TOKEN, base_url=base, request=AiohttpRequest()) as bot:
        message = await bot.send_message(1001, "Send it?", reply_markup=markup)
    assert message.message_id == 7
    form = fake.forms[-1]
    assert form["chat_id"] == "1001" and form["text"] == "Send it?"
    assert json.loads(form["reply_markup"]) == {"inline_keyboard": [[{"text": "Approve", "callback_data": "a:1"}]]}


async def test_a_file_goes_as_multipart(api: tuple[BotApi, str]) -> None:
    fake, base = api
    async with Bot(TOKEN, base_url=base, request=AiohttpRequest()) as bot:
        await bot.send_document(1001, b"export,line\n", filename="export.csv", caption="Your export")
    form = fake.forms[-1]
    assert form["caption"] == "Your export"
    assert form["document"] == ("export.csv", b"export,line\n")


async def test_a_429_becomes_retry_after(api: tuple[BotApi, str]) -> None:
    fake, base = api
    fake.mode = "429"
    async with Bot(TOKEN, base_url=base, request=AiohttpRequest()) as bot:
        with pytest.raises(RetryAfter) as caught:
            await bot.send_message(1001, "hi")
    assert caught.value.retry_after == 3


async def test_no_answer_within_the_read_timeout_is_timed_out(api: tuple[BotApi, str]) -> None:
    fake, base = api
    async with Bot(TOKEN, base_url=base, request=AiohttpRequest(read_timeout=0.05)) as bot:
        fake.mode = "hang"
        with pytest.raises(TimedOut):
            await bot.send_message(1001, "hi")
    assert len(fake.forms) == 1  # sent once: the transport itself never retries


async def test_a_dropped_connection_is_a_network_error(api: tuple[BotApi, str]) -> None:
    fake, base = api
    async with Bot(TOKEN, base_url=base, request=AiohttpRequest()) as bot:
        fake.mode = "drop"
        with pytest.raises(NetworkError) as caught:
            await bot.send_message(1001, "hi")
    assert not isinstance(caught.value, TimedOut)


async def test_a_closed_port_is_a_network_error() -> None:
    request = AiohttpRequest()
    await request.initialize()
    try:
        with pytest.raises(NetworkError):
            await request.post("http://127.0.0.1:9/bot123:abc/getMe")
    finally:
        await request.shutdown()


async def test_a_request_before_initialize_is_refused() -> None:
    with pytest.raises(RuntimeError, match="not initialized"):
        await AiohttpRequest().do_request("http://127.0.0.1:9/x", "POST")


async def test_a_redirect_is_not_followed(api: tuple[BotApi, str]) -> None:
    fake, base = api
    async with Bot(TOKEN, base_url=base, request=AiohttpRequest()) as bot:
        fake.mode = "redirect"
        with pytest.raises(NetworkError):
            await bot.send_message(1001, "private text")
    assert [list(form) for form in fake.forms] == [["chat_id", "text"]]  # nothing reached the other URL


async def test_the_proxy_from_the_environment_is_used(api: tuple[BotApi, str], monkeypatch: pytest.MonkeyPatch) -> None:
    fake, base = api
    proxy = base.removesuffix("/bot")  # the fake answers absolute-form requests as a proxy would forward them
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with Bot(TOKEN, base_url="http://api.telegram.invalid/bot", request=AiohttpRequest()) as bot:
        await bot.send_message(1001, "through the proxy")
    assert fake.forms[-1]["text"] == "through the proxy"


async def test_no_proxy_hosts_are_reached_directly(api: tuple[BotApi, str], monkeypatch: pytest.MonkeyPatch) -> None:
    fake, base = api
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with Bot(TOKEN, base_url=base, request=AiohttpRequest()) as bot:
        await bot.send_message(1001, "direct")
    assert fake.forms[-1]["text"] == "direct"
