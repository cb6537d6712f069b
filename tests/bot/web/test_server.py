"""The console's server built directly (tests/bot/web/console_parts.py): a one-time link signs in once (by the
injected clock it expires), every answer carries the security headers, the pages show the stores' state with
outside text escaped, and signing out ends the session."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.web.auth import COOKIE
from bot.web.server import SECURITY_HEADERS
from prompts.messages import GENERIC_ERROR
from tests.bot.web.console_parts import Web, console_parts
from tests.conftest import DateClock
from tests.fakes.openai_api import FakeOpenAI
from tests.graph.parts import OPERATOR, spec

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TOKEN = re.compile(r'name="token" value="([^"]+)"')


@pytest.fixture
def clock() -> DateClock:
    return DateClock(NOON)


@pytest.fixture
async def console(tmp_path: Path, fake_llm: FakeOpenAI, clock: DateClock) -> AsyncIterator[Web]:
    async with console_parts(tmp_path, fake_llm, clock=clock) as built:
        yield built


async def link_token(console: Web) -> str:
    link = await console.console.new_link(OPERATOR, "rec")
    return link.rsplit("/login/", 1)[1]


async def test_a_link_signs_in_once_with_a_strict_cookie(console: Web) -> None:
    token = await link_token(console)
    page = await console.client.get(f"/login/{token}")
    assert page.status == 200 and TOKEN.search(await page.text()) is not None  # a preview uses nothing
    signed = await console.client.post("/login", data={"token": token}, allow_redirects=False)
    again = await console.client.post("/login", data={"token": token}, allow_redirects=False)
    cookie = signed.cookies[COOKIE]
    assert (signed.status, signed.headers["Location"]) == (303, "/")
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert again.status == 401 and (await console.client.get(f"/login/{token}")).status == 401


async def test_an_expired_link_opens_nothing(console: Web, clock: DateClock) -> None:
    token = await link_token(console)
    clock.at = NOON + timedelta(minutes=11)
    page = await console.client.get(f"/login/{token}")
    signed = await console.client.post("/login", data={"token": token}, allow_redirects=False)
    assert (page.status, signed.status) == (401, 401) and COOKIE not in signed.cookies


@pytest.mark.parametrize("path", ["/", "/cards", "/spend", "/goals", "/login/unknown", "/nowhere"])
async def test_every_answer_carries_the_security_headers(console: Web, path: str) -> None:
    answer = await console.get(path)
    assert {name: answer.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS


async def test_a_page_that_fails_answers_briefly_with_the_security_headers(
    console: Web, caplog: pytest.LogCaptureFixture
) -> None:
    await console.chat.parts.stores.db.script("DROP TABLE followups")  # Today reads it: the page fails
    answer = await console.get("/")
    assert answer.status == 500 and await answer.text() == GENERIC_ERROR
    assert {name: answer.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
    assert [r.message for r in caplog.records if r.name == "bot.web.server"] == ["web console: GET / failed"]


async def test_the_pages_show_cards_and_goals_with_outside_text_escaped(console: Web) -> None:
    row = await console.chat.email_card('<script>alert("x")</script> Offer')
    goal, _ = await console.chat.parts.goal_with_tasks(spec("t1", "<b>Find</b> a sponsor"))
    today, cards, board = (await console.get("/")), (await console.get("/cards")), (await console.get("/goals"))
    texts = [await today.text(), await cards.text(), await board.text()]
    assert [today.status, cards.status, board.status] == [200, 200, 200]
    assert all("<script>alert" not in text for text in texts)
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; Offer" in texts[1] and row.nonce in texts[1]
    assert "&lt;b&gt;Find&lt;/b&gt; a sponsor" in texts[2] and goal.id in texts[2]


async def test_signing_out_ends_the_session(console: Web) -> None:
    out = await console.post("/logout")
    assert out.status == 200 and "Signed out." in await out.text()
    assert (await console.get("/")).status == 401


async def test_without_a_session_no_page_is_shown(console: Web) -> None:
    answer = await console.client.get("/cards")
    assert answer.status == 401


async def test_a_live_page_hears_a_card_decided_in_the_console(console: Web) -> None:
    row = await console.chat.email_card()
    stream = await console.client.get("/changes", headers=console.cookie)
    assert await asyncio.wait_for(stream.content.readline(), 5) == b"retry: 3000\n"  # subscribed by now
    await console.post(f"/cards/{row.id}/decide", nonce=row.nonce, digest=row.digest, verb="approve")
    line = b""
    while not line.startswith(b"data:"):
        line = await asyncio.wait_for(stream.content.readline(), 5)
    assert "cards" in line.decode().split()
    stream.close()
