"""The console's access middleware on its own (I6): a live session of a current operator, CSRF on POST.

The middleware guards a two-route app served by aiohttp's test server; sessions are real rows in SQLite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.access import AccessGuard
from bot.web.auth import COOKIE, FORGED, csrf_token, make_guard, session_of
from memory.db import Database, open_database
from memory.operators import OperatorStore
from memory.web_sessions import WebAuthStore
from tests.bot.web.console_parts import session_token

OPERATOR = "telegram:1001"


@dataclass
class Guarded:
    """A guarded app: what reached its handlers, and the stores behind it."""

    client: TestClient[web.Request, web.Application]
    db: Database
    auth: WebAuthStore
    done: list[str] = field(default_factory=list)

    async def session_for(self, operator: str = OPERATOR) -> str:
        """A session cookie value, made the way the console makes one (a link, redeemed once)."""
        return await session_token(self.auth, operator)

    async def events(self, kind: str) -> list[tuple[str, str]]:
        rows = await self.db.fetchall("SELECT actor, payload FROM events WHERE kind = ? ORDER BY id", (kind,))
        return [(str(r[0]), str(r[1])) for r in rows]


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Guarded]:
    async with open_database(tmp_path) as db:
        auth, operators = WebAuthStore(db), OperatorStore(db)
        await auth.setup()
        await operators.setup()
        done: list[str] = []

        async def page(request: web.Request) -> web.Response:
            return web.Response(text=f"hello {session_of(request).operator}")

        async def act(request: web.Request) -> web.Response:
            done.append(session_of(request).operator)
            return web.Response(text="done")

        async def public(_: web.Request) -> web.Response:
            return web.Response(text="sign in here")

        app = web.Application(middlewares=[make_guard(auth, AccessGuard(frozenset({OPERATOR}), operators))])
        app.router.add_get("/", page)
        app.router.add_post("/act", act)
        app.router.add_get("/login/{token}", public)
        async with TestClient(TestServer(app)) as client:
            yield Guarded(client, db, auth, done)


async def test_a_live_session_reads_pages_and_posts_with_its_token(guarded: Guarded) -> None:
    token = await guarded.session_for()
    cookie = {"Cookie": f"{COOKIE}={token}"}
    page = await guarded.client.get("/", headers=cookie)
    posted = await guarded.client.post("/act", data={"csrf": csrf_token(token)}, headers=cookie)
    assert (page.status, await page.text()) == (200, f"hello {OPERATOR}")
    assert posted.status == 200 and guarded.done == [OPERATOR]


async def test_no_unknown_or_revoked_session_reaches_a_page(guarded: Guarded) -> None:
    token = await guarded.session_for()
    await guarded.auth.revoke(token, OPERATOR)
    statuses = [
        (await guarded.client.get("/")).status,
        (await guarded.client.get("/", headers={"Cookie": f"{COOKIE}=made-up"})).status,
        (await guarded.client.get("/", headers={"Cookie": f"{COOKIE}={token}"})).status,
    ]
    assert statuses == [401, 401, 401]


async def test_public_paths_need_no_session(guarded: Guarded) -> None:
    answer = await guarded.client.get("/login/anything")
    assert (answer.status, await answer.text()) == (200, "sign in here")


@pytest.mark.parametrize("sent", [None, "", "0" * 64, "forged"])
async def test_a_post_without_its_sessions_token_does_nothing_and_is_recorded(
    guarded: Guarded, sent: str | None
) -> None:
    """A cross-site form carries the cookie but not the token: refused, the handler never runs, one event."""
    token = await guarded.session_for()
    form = {} if sent is None else {"csrf": sent}
    answer = await guarded.client.post("/act", data=form, headers={"Cookie": f"{COOKIE}={token}"})
    assert answer.status == 403 and FORGED in await answer.text()
    assert guarded.done == []
    assert [actor for actor, _ in await guarded.events("web.forged")] == [OPERATOR]


async def test_another_sessions_token_does_not_pass(guarded: Guarded) -> None:
    mine, other = await guarded.session_for(), await guarded.session_for()
    answer = await guarded.client.post("/act", data={"csrf": csrf_token(other)}, headers={"Cookie": f"{COOKIE}={mine}"})
    assert answer.status == 403 and guarded.done == []


async def test_a_session_of_someone_no_longer_an_operator_is_refused(guarded: Guarded) -> None:
    """The session outlives the operator's access (removed from pairing): refused at the next request."""
    token = await guarded.session_for("telegram:2002")
    cookie = {"Cookie": f"{COOKIE}={token}"}
    page = await guarded.client.get("/", headers=cookie)
    posted = await guarded.client.post("/act", data={"csrf": csrf_token(token)}, headers=cookie)
    assert (page.status, posted.status) == (403, 403) and guarded.done == []


def test_the_csrf_token_is_bound_to_its_session() -> None:
    assert csrf_token("a") == csrf_token("a") != csrf_token("b")
    assert len(csrf_token("a")) == 64
