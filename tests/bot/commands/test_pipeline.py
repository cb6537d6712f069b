"""``/pipeline`` as the runtime opens it (``open_pipeline``: tables made, command registered), on real SQLite:
no arguments is the overview, arguments one contact's request; a bad request is one clear line, nothing
written. The pipeline service's own rules are tested in tests/graph/pipeline/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bot.commands.pipeline import open_pipeline
from bot.commands.router import CommandRouter
from graph.errors import UserFacingError
from memory.db import Database, open_database
from memory.records import Records
from prompts import messages
from tests.conftest import operator_message


@asynccontextmanager
async def pipeline_chat(tmp_path: Path) -> AsyncIterator[tuple[CommandRouter, Database]]:
    async with open_database(tmp_path) as db:
        records = Records(db)
        await records.setup()
        await records.upsert("contact", {"name": "Ana Silva", "emails": ["ana@lumen.example"]}, "op")
        router = CommandRouter()
        await open_pipeline(db, records, "UTC", router)
        yield router, db


async def say(router: CommandRouter, text: str) -> str:
    return await router.run(operator_message(text, kind="command"))


async def stage_rows(db: Database) -> int:
    return int((await db.fetchone("SELECT count(*) FROM pipeline_stages"))[0])


async def test_a_contact_is_moved_and_the_overview_shows_it(tmp_path: Path) -> None:
    async with pipeline_chat(tmp_path) as (router, db):
        empty = await say(router, "/pipeline")
        moved = await say(router, "/pipeline Ana lead")
        again = await say(router, "/pipeline ana lead")
        overview = await say(router, "/pipeline")
        assert await stage_rows(db) == 1
    assert empty.startswith(messages.PIPELINE_EMPTY)
    assert moved == messages.PIPELINE_MOVED.format(name="Ana Silva", old="(none)", stage="lead")
    assert again == messages.PIPELINE_SAME.format(name="Ana Silva", stage="lead")
    assert overview.splitlines()[:2] == [messages.PIPELINE_HEAD, "lead 1, talking 0, proposal 0, customer 0, lost 0"]
    assert router.is_confidential("/pipeline")  # figures and names only in a private chat


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ("Ana hot", messages.PIPELINE_BAD_STAGE.format(word="hot")),
        ("Nobody lead", messages.PIPELINE_NO_CONTACT.format(query="Nobody")),
    ],
)
async def test_a_bad_request_is_one_line_and_writes_nothing(tmp_path: Path, args: str, error: str) -> None:
    async with pipeline_chat(tmp_path) as (router, db):
        with pytest.raises(UserFacingError) as refused:
            await say(router, f"/pipeline {args}")
        assert str(refused.value) == error
        assert await stage_rows(db) == 0
