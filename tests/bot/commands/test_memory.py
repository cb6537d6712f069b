"""/profile and the restored profile on their own (real SQLite; semantic memory off, so /remember, /recall and
/forget are not offered: their runs with an index are in tests/bot/test_memory_commands.py). Bad arguments
are one line with the usage, and nothing is written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.commands.memory import PROFILE_USAGE, register_memory_commands
from bot.commands.router import CommandRouter
from graph.errors import UserFacingError
from memory.db import Database, open_database
from memory.notes import NoteLedger
from memory.profile import ProfileStore
from prompts.messages import PROFILE_RESTORE_DROPPED, PROFILE_RESTORE_NONE, PROFILE_RISK_MOVED
from tests.conftest import operator_message


@dataclass
class ProfileChat:
    router: CommandRouter
    profile: ProfileStore
    db: Database
    repairs: list[str]

    async def say(self, text: str) -> str:
        return await self.router.run(operator_message(text, kind="command"))

    async def changes(self) -> int:
        return int((await self.db.fetchone("SELECT count(*) FROM events WHERE kind = 'profile.set'"))[0])


@asynccontextmanager
async def profile_chat(tmp_path: Path) -> AsyncIterator[ProfileChat]:
    async with open_database(tmp_path) as db:
        profile, notes = ProfileStore(db), NoteLedger(db)
        await profile.setup()
        await notes.setup()
        repairs: list[str] = []
        router = CommandRouter()
        register_memory_commands(router, db, None, notes, profile, "default", lambda: repairs.append("repair"))
        yield ProfileChat(router, profile, db, repairs)


async def test_fields_are_set_shown_and_cleared(tmp_path: Path) -> None:
    async with profile_chat(tmp_path) as chat:
        empty = await chat.say("/profile")
        set_ = await chat.say("/profile set business   Lumen   Studio")
        cleared = await chat.say("/profile clear business")
        assert await chat.changes() == 2
    assert empty == "The profile is empty. " + PROFILE_USAGE
    assert set_ == "Profile:\n- business name: Lumen Studio"
    assert cleared == "Profile:\n(empty)"
    assert [name for name, _ in chat.router.menu()] == ["profile"]  # no index: no /remember, /recall, /forget


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ("set", PROFILE_USAGE),
        ("set business", PROFILE_USAGE),
        ("clear", PROFILE_USAGE),
        ("clear business now", PROFILE_USAGE),
        ("wipe business", PROFILE_USAGE),
        ("set password hunter2", "unknown profile field 'password'; one of "),
        ("set business " + "x" * 2000, "business is longer than "),
        ("set risk relaxed", PROFILE_RISK_MOVED),
        ("restore now", None),  # nothing waits: told so, nothing written
    ],
)
async def test_bad_arguments_are_one_line_and_write_nothing(tmp_path: Path, args: str, error: str | None) -> None:
    async with profile_chat(tmp_path) as chat:
        if error is None:
            assert await chat.say(f"/profile {args}") == PROFILE_RESTORE_NONE
        else:
            with pytest.raises(UserFacingError) as refused:
                await chat.say(f"/profile {args}")
            assert str(refused.value).startswith(error) and "\n" not in str(refused.value)
        assert await chat.changes() == 0 and (await chat.profile.get()).render() == ""


async def test_a_restored_profile_waits_until_confirmed_or_dropped(tmp_path: Path) -> None:
    """A backup's profile is data until the operator takes it: shown as waiting, in effect only on restore."""
    async with profile_chat(tmp_path) as chat:
        await chat.profile.hold({"business": ("Imported Ltd", 1)})
        waiting = await chat.say("/profile")
        with pytest.raises(UserFacingError):
            await chat.say("/profile restore everything")
        still = await chat.say("/profile")
        taken = await chat.say("/profile restore")
        await chat.profile.hold({"name": ("Someone", 2)})
        dropped = await chat.say("/profile restore drop")
        final = (await chat.profile.get()).render()
    assert "Imported Ltd" in waiting and waiting.startswith("The profile is empty.")
    assert still == waiting
    assert taken == "Profile:\n- business name: Imported Ltd"
    assert dropped == PROFILE_RESTORE_DROPPED and final == "- business name: Imported Ltd"
    assert chat.repairs == []
