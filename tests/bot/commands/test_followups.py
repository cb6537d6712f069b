"""/followup and /followups on their own: the command module over a real FollowupBook (SQLite, an injected
date clock, no runtime). Bad arguments give the usage line and store nothing; the listing is capped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.commands.followups import LISTED, FollowupCommands
from bot.commands.router import CommandRouter
from graph.errors import UserFacingError
from graph.followups.book import FollowupBook
from memory.approval_schema import APPROVALS_SCHEMA
from memory.db import open_database
from memory.followups import FollowupStore
from memory.mail import MailStore
from memory.records import Records
from prompts import messages
from tests.conftest import DateClock, operator_message


@asynccontextmanager
async def followups(tmp_path: Path) -> AsyncIterator[tuple[CommandRouter, FollowupStore]]:
    async with open_database(tmp_path) as db:
        store, records = FollowupStore(db), Records(db)
        await store.setup()
        await records.setup()
        await MailStore(db).setup()  # an address's last sent mail (with its card) threads the follow-up
        await db.script(APPROVALS_SCHEMA)
        clock = DateClock(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))  # a Monday
        router = CommandRouter()
        FollowupCommands(FollowupBook(store, records, "UTC", clock)).register(router)
        yield router, store


async def say(router: CommandRouter, text: str) -> str:
    return await router.run(operator_message(text, kind="command"))


async def test_a_followup_is_saved_listed_and_closed(tmp_path: Path) -> None:
    async with followups(tmp_path) as (router, store):
        saved = await say(router, "/followup ana@example.org 3d | the proposal")
        listing = await say(router, "/followups")
        done = await say(router, "/followup done #1")
        left = await say(router, "/followups")
        [closed] = await store.listing(states=("done",))
    assert saved.startswith("Follow-up #1") and "Thu 05 Mar 2026" in saved
    assert listing.splitlines() == [
        messages.FOLLOWUPS_HEAD.format(count=1),
        "#1 due Thu 05 Mar 2026 09:00 · ana@example.org · the proposal",
    ]
    assert done == messages.FOLLOWUP_MARKED.format(id=1, what="the proposal", contact="ana@example.org", state="done")
    assert left == messages.FOLLOWUPS_NONE and closed.id == 1


@pytest.mark.parametrize(
    "args",
    [
        "",
        "ana@example.org 3d",  # no "|"
        "ana@example.org | the proposal",  # no day
        "ana@example.org 3d |   ",  # nothing to follow up
        "done one",
        "cancel #x",
        "done 1234567890123",  # longer than any id
    ],
)
async def test_bad_arguments_give_the_usage_and_store_nothing(tmp_path: Path, args: str) -> None:
    async with followups(tmp_path) as (router, store):
        with pytest.raises(UserFacingError) as refused:
            await say(router, f"/followup {args}")
        assert str(refused.value) == messages.FOLLOWUP_USAGE
        assert await store.count() == 0


async def test_an_unreadable_day_or_unknown_id_is_one_line_and_nothing_changes(tmp_path: Path) -> None:
    async with followups(tmp_path) as (router, store):
        await say(router, "/followup ana@example.org 3d | the proposal")
        with pytest.raises(UserFacingError) as unknown:
            await say(router, "/followup done 99")
        with pytest.raises(UserFacingError) as past:
            await say(router, "/followup ana@example.org 2020-01-01 | the proposal")
        open_ones = await store.listing()
    assert str(unknown.value) == messages.FOLLOWUP_UNKNOWN.format(id=99)
    assert "\n" not in str(past.value)
    assert [f.id for f in open_ones] == [1]


async def test_a_long_listing_says_how_many_more_there_are(tmp_path: Path) -> None:
    async with followups(tmp_path) as (router, _):
        for n in range(LISTED + 2):
            await say(router, f"/followup Bob {n + 1}d | item {n}")
        lines = (await say(router, "/followups")).splitlines()
    assert lines[0] == messages.FOLLOWUPS_HEAD.format(count=LISTED + 2)
    assert len(lines) == LISTED + 2 and lines[-1] == messages.FOLLOWUPS_MORE.format(count=2)
