"""/routines on its own (real SQLite): switching a routine off skips it until it is switched on again;
bad arguments give the usage line and switch nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bot.commands.router import CommandRouter
from bot.routines import USAGE, register_routines, switch_key, when_on
from graph.errors import UserFacingError
from memory.control import ControlStore
from memory.db import Database, open_database
from tests.conftest import operator_message


@asynccontextmanager
async def routines(tmp_path: Path) -> AsyncIterator[tuple[CommandRouter, ControlStore, Database]]:
    async with open_database(tmp_path) as db:
        control = ControlStore(db)
        await control.setup()
        router = CommandRouter()
        register_routines(router, control, db)
        yield router, control, db


async def say(router: CommandRouter, text: str) -> str:
    return await router.run(operator_message(text, kind="command"))


async def test_a_routine_switched_off_is_skipped_until_switched_on(tmp_path: Path) -> None:
    ran: list[str] = []

    async def health() -> None:
        ran.append("health")

    async with routines(tmp_path) as (router, control, db):
        maybe = when_on(control, "health", health)
        await maybe()
        off = await say(router, "/routines off health")
        await maybe()
        on = await say(router, "/routines ON health")
        await maybe()
        events = await db.fetchall("SELECT kind, actor FROM events WHERE kind LIKE 'routine.%' ORDER BY id")
    assert ran == ["health", "health"]
    assert "- health (off):" in off and "- memory (on):" in off
    assert "- health (on):" in on
    assert [(r[0], r[1]) for r in events] == [("routine.off", "telegram:1001"), ("routine.on", "telegram:1001")]


@pytest.mark.parametrize("args", ["off", "off everything", "pause health", "off health now", "off memory,health"])
async def test_bad_arguments_give_the_usage_and_switch_nothing(tmp_path: Path, args: str) -> None:
    async with routines(tmp_path) as (router, control, _):
        with pytest.raises(UserFacingError) as refused:
            await say(router, f"/routines {args}")
        assert str(refused.value) == USAGE
        assert await control.get(switch_key("health")) is None and await control.get(switch_key("memory")) is None


async def test_the_listing_alone_changes_nothing(tmp_path: Path) -> None:
    async with routines(tmp_path) as (router, _, db):
        listing = await say(router, "/routines")
        events = await db.fetchall("SELECT 1 FROM events WHERE kind LIKE 'routine.%'")
    assert listing.splitlines()[0] == "Routines:" and len(listing.splitlines()) == 3 and events == []
