"""The web console's login links and sessions, on a real SQLite file with a clock the test moves: a link
opens one session once, tokens are stored only as hashes, and links and sessions end at their time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from memory.db import Database, open_database
from memory.web_sessions import WebAuthStore, token_hash
from tests.conftest import DateClock

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OPERATOR = "telegram:1001"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with open_database(tmp_path) as opened:
        yield opened


async def store_at(db: Database, clock: DateClock) -> WebAuthStore:
    store = WebAuthStore(db, clock)
    await store.setup()
    return store


async def kinds(db: Database) -> list[str]:
    return [event.kind for event in await db.events(kind=("web.link", "web.login", "web.login_refused", "web.logout"))]


async def test_a_link_opens_one_session_that_signs_out(db: Database) -> None:
    clock = DateClock(START)
    store = await store_at(db, clock)
    link = await store.create_link(OPERATOR, timedelta(minutes=10), via="telegram")
    assert await store.link_valid(link)

    redeemed = await store.redeem(link, timedelta(hours=8))
    assert redeemed is not None
    operator, cookie = redeemed
    assert operator == OPERATOR
    session = await store.session(cookie)
    assert session is not None
    assert (session.operator, session.created_at, session.expires_at) == (OPERATOR, START, START + timedelta(hours=8))
    assert [s.id for s in await store.live()] == [token_hash(cookie)[:12]]

    assert await store.revoke(cookie, OPERATOR)
    assert await store.session(cookie) is None
    assert not await store.revoke(cookie, OPERATOR)  # once
    assert await kinds(db) == ["web.link", "web.login", "web.logout"]


async def test_a_replayed_or_unknown_link_opens_nothing_and_the_first_session_stays(db: Database) -> None:
    store = await store_at(db, DateClock(START))
    link = await store.create_link(OPERATOR, timedelta(minutes=10), via="terminal")
    first = await store.redeem(link, timedelta(hours=8))
    assert first is not None

    assert await store.redeem(link, timedelta(hours=8)) is None
    assert await store.redeem("not-a-link", timedelta(hours=8)) is None
    assert not await store.link_valid(link)
    assert await store.session(first[1]) is not None
    assert len(await store.live()) == 1
    assert await kinds(db) == ["web.link", "web.login", "web.login_refused", "web.login_refused"]


async def test_a_session_id_too_short_or_not_hex_revokes_nothing(db: Database) -> None:
    store = await store_at(db, DateClock(START))
    redeemed = await store.redeem(await store.create_link(OPERATOR, timedelta(minutes=5), via="t"), timedelta(hours=1))
    assert redeemed is not None
    session_id = token_hash(redeemed[1])[:12]
    assert await store.revoke_id(session_id[:5], OPERATOR) == 0
    assert await store.revoke_id("zzzzzzzz", OPERATOR) == 0
    assert await store.session(redeemed[1]) is not None
    assert await store.revoke_id(session_id[:6], OPERATOR) == 1
    assert await store.session(redeemed[1]) is None


async def test_links_and_sessions_end_at_their_time(db: Database) -> None:
    clock = DateClock(START)
    store = await store_at(db, clock)
    late = await store.create_link(OPERATOR, timedelta(minutes=10), via="telegram")
    on_time = await store.create_link(OPERATOR, timedelta(minutes=10), via="telegram")
    clock.at = START + timedelta(minutes=9, seconds=59)
    redeemed = await store.redeem(on_time, timedelta(hours=1))
    assert redeemed is not None
    clock.at = START + timedelta(minutes=10)
    assert not await store.link_valid(late)
    assert await store.redeem(late, timedelta(hours=1)) is None

    assert await store.session(redeemed[1]) is not None
    clock.at = START + timedelta(minutes=9, seconds=59) + timedelta(hours=1)
    assert await store.session(redeemed[1]) is None
    assert await store.live() == []


async def test_tokens_are_stored_only_as_their_hashes(db: Database) -> None:
    store = await store_at(db, DateClock(START))
    link = await store.create_link(OPERATOR, timedelta(minutes=10), via="telegram")
    redeemed = await store.redeem(link, timedelta(hours=1))
    assert redeemed is not None
    stored = [
        value
        for table in ("web_links", "web_sessions")
        for row in await db.fetchall(f"SELECT * FROM {table}")
        for value in row
    ]
    stored += [str(event.payload) for event in await db.events()]
    assert not any(link in str(value) or redeemed[1] in str(value) for value in stored)
    assert token_hash(link) in stored and token_hash(redeemed[1]) in stored
