"""The event log in a backup (``memory.event_log``), on real SQLite files: every event comes back with its
id, in id order whatever the order of the lines, and the messages among them are found by search again;
a restore that fails keeps none of its events."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from memory.db import open_database
from memory.event_log import EventLine, EventLog, event_line, events_query


async def test_events_come_back_with_their_ids_in_order_and_messages_are_found_again(tmp_path: Path) -> None:
    async with open_database(tmp_path / "a") as db:
        await db.append_event("message.in", "telegram:1001", {"text": "invoice for Globex"}, session="s1")
        gap = await db.append_event("note", "coo", {"n": 1})
        await db.append_event("message.out", "coo", {"text": "sent the Globex invoice"}, session="s1")
        dumped = await EventLog(db).dump()
        assert [event_line(row) for row in await db.fetchall(events_query("WHERE id = ?"), (gap,))] == [dumped[1]]
    lines = [EventLine.model_validate(line) for line in dumped]
    random.Random(7).shuffle(lines)
    async with open_database(tmp_path / "b") as db:
        await EventLog(db).restore(lines)
        assert await EventLog(db).dump() == dumped
        found = await db.search_messages(["globex"], limit=5)
        assert sorted(e.kind for e in found) == ["message.in", "message.out"]


async def test_a_line_without_its_payload_or_with_a_bad_time_is_refused(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        await db.append_event("note", "coo", {"n": 1})
        (line,) = await EventLog(db).dump()
    with pytest.raises(ValidationError, match="payload"):
        EventLine.model_validate({k: v for k, v in line.items() if k != "payload"})
    with pytest.raises(ValidationError, match="at"):
        EventLine.model_validate({**line, "at": "yesterday"})


async def test_a_restore_that_fails_keeps_none_of_its_events(tmp_path: Path) -> None:
    async with open_database(tmp_path / "a") as db:
        for n in range(3):
            await db.append_event("note", "coo", {"n": n})
        lines = [EventLine.model_validate(line) for line in await EventLog(db).dump()]
    async with open_database(tmp_path / "b") as db:
        await EventLog(db).restore(lines[2:])
        with pytest.raises(sqlite3.IntegrityError):
            await EventLog(db).restore(lines)  # the last id is taken: the first two must not be written either
        assert [e.payload["n"] for e in await db.events()] == [2]
