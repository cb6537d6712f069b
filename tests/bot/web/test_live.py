"""The console's change feed (bot/web/live.py) on the stores ``coo run`` opens: a page hears ``log`` when the
event log moves, ``cards`` when a card does, both at once when the console itself poked, and ``None`` when
the console stops. Waits are on the page's queue, never on a clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from bot.stores import Stores, open_stores
from bot.web.channel import WebChannel
from bot.web.live import TOPICS, ChangeFeed
from tests.conftest import make_settings


@pytest.fixture
async def feed(tmp_path: Path) -> AsyncIterator[tuple[ChangeFeed, WebChannel, Stores]]:
    async with AsyncExitStack() as stack:
        stores = await open_stores(make_settings(tmp_path), stack)
        channel = WebChannel()
        changes = ChangeFeed(stores.db, channel, interval_s=0.01)
        yield changes, channel, stores
        await changes.close()


async def heard(queue: asyncio.Queue[frozenset[str] | None]) -> frozenset[str] | None:
    return await asyncio.wait_for(queue.get(), 5)


async def test_a_new_event_is_heard_as_log(feed: tuple[ChangeFeed, WebChannel, Stores]) -> None:
    changes, _, stores = feed
    page = await changes.subscribe()
    await stores.db.append_event("message.in", "telegram:1001", {"text": "hi"})
    assert await heard(page) == frozenset({"log"})


async def test_a_new_card_is_heard_as_cards(feed: tuple[ChangeFeed, WebChannel, Stores]) -> None:
    changes, _, stores = feed
    page = await changes.subscribe()
    await stores.db.write(
        "INSERT INTO approvals (id, root_id, thread, origin, kind, action, digest, approvers, nonce, created_at,"
        " expires_at, state) VALUES ('a1', 'a1', 's', 'chat', 'email.send', '{}', 'd', '[]', 'n',"
        " '2026-03-01T10:00:00+00:00', '2026-03-02T10:00:00+00:00', 'pending')"
    )
    assert await heard(page) == frozenset({"cards"})


async def test_a_poke_from_the_console_is_heard_by_every_page_at_once(
    feed: tuple[ChangeFeed, WebChannel, Stores],
) -> None:
    changes, channel, _ = feed
    pages = [await changes.subscribe(), await changes.subscribe()]
    channel.poke()
    assert [await heard(page) for page in pages] == [frozenset(TOPICS)] * 2


async def test_a_poke_right_after_the_first_subscribe_is_heard(feed: tuple[ChangeFeed, WebChannel, Stores]) -> None:
    """The watch has not run yet when the console pokes: the poke still reaches the page."""
    changes, channel, _ = feed
    page = await changes.subscribe()
    channel.poke()
    assert await heard(page) == frozenset(TOPICS)


async def test_stopping_the_console_ends_every_stream(feed: tuple[ChangeFeed, WebChannel, Stores]) -> None:
    changes, _, _ = feed
    page = await changes.subscribe()
    await changes.close()
    assert changes.closed and await heard(page) is None


async def test_a_page_that_went_away_hears_nothing_more(feed: tuple[ChangeFeed, WebChannel, Stores]) -> None:
    changes, channel, _ = feed
    gone, staying = await changes.subscribe(), await changes.subscribe()
    changes.unsubscribe(gone)
    channel.poke()
    assert await heard(staying) == frozenset(TOPICS)
    assert gone.empty()
