"""The timeline's filters on their own: a GET form read into filters, and the SQL they become, run over a
real event log in SQLite. Bad fields are named and dropped; hostile values stay values."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.web.event_filters import Filters, parse_filters, where
from memory.approval_schema import APPROVALS_SCHEMA
from memory.db import Database, open_database
from memory.records import Records
from memory.tasks import TaskLedger

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with open_database(tmp_path) as opened:
        await Records(opened).setup()
        await TaskLedger(opened).setup()
        await opened.script(APPROVALS_SCHEMA)
        yield opened


async def log(db: Database, kind: str, at: str, **payload: Any) -> int:
    """An event written at a fixed time (no wall clock)."""
    written = await db.write(
        "INSERT INTO events (at, actor, session, kind, payload) VALUES (?, 'test', NULL, ?, ?)",
        (at, kind, json.dumps(payload)),
    )
    assert written.lastrowid is not None
    return written.lastrowid


async def shown(db: Database, filters: Filters, zone: ZoneInfo = UTC, records: Records | None = None) -> list[int]:
    contact = None
    if filters.contact and records is not None:
        found = await records.get("contact", filters.contact)
        contact = found.data if found else None
    condition, args = where(filters, contact, zone)  # type: ignore[arg-type]
    rows = await db.fetchall(f"SELECT id FROM events WHERE {condition} ORDER BY id", args)
    return [int(r[0]) for r in rows]


async def test_a_full_form_is_read_whole(db: Database) -> None:
    records = Records(db)
    ana = await records.upsert("contact", {"name": "Ana", "emails": ["ana@example.org"]}, "test")
    goal = await TaskLedger(db).create_goal("find a sponsor", "s", "test")
    query = {
        "kind": "email.sent",
        "contact": ana.id,
        "goal": goal.id,
        "from": "2026-03-01",
        "to": "2026-03-02",
        "before": "90",
    }
    parsed = await parse_filters(query, records, db)
    assert parsed.problem == ""
    assert parsed.filters == Filters("email.sent", ana.id, goal.id, date(2026, 3, 1), date(2026, 3, 2), 90)
    assert parsed.contact is not None and parsed.contact.name == "Ana"
    assert parsed.filters.any


async def test_bad_fields_are_named_and_dropped_the_rest_applies(db: Database) -> None:
    query = {"kind": "email.sent", "from": "yesterday", "goal": "g-missing", "contact": "c-missing", "before": "-3"}
    parsed = await parse_filters(query, Records(db), db)
    assert parsed.filters == Filters(kind="email.sent")
    assert parsed.problem == (
        "Not applied: 'yesterday' is not a date (YYYY-MM-DD); there is no contact 'c-missing'; "
        "there is no goal 'g-missing'; '-3' is not a place in the log. Showing the rest."
    )


async def test_a_range_that_ends_before_it_starts_is_dropped(db: Database) -> None:
    parsed = await parse_filters({"from": "2026-03-05", "to": "2026-03-01"}, Records(db), db)
    assert parsed.filters.start is None and parsed.filters.end is None
    assert "starts (2026-03-05) after it ends (2026-03-01)" in parsed.problem


async def test_hostile_values_are_refused_as_ids_and_match_nothing_as_kinds(db: Database) -> None:
    """SQL in a field is a value: the log is intact and only that field is affected."""
    first = await log(db, "email.sent", "2026-03-01T10:00:00+00:00")
    hostile = "x' OR 1=1; DROP TABLE events; --"
    parsed = await parse_filters({"kind": hostile, "contact": hostile, "goal": hostile}, Records(db), db)
    assert "there is no contact" in parsed.problem and "there is no goal" in parsed.problem
    assert await shown(db, parsed.filters) == []
    assert await shown(db, Filters()) == [first]


async def test_days_are_the_operators_days(db: Database) -> None:
    """23:30 UTC on March 1st is March 2nd in Berlin: the same day filter shows it there, not in UTC."""
    late = await log(db, "a", "2026-03-01T23:30:00+00:00")
    early = await log(db, "a", "2026-03-01T10:00:00+00:00")
    march_2 = Filters(start=date(2026, 3, 2), end=date(2026, 3, 2))
    assert await shown(db, march_2, BERLIN) == [late]
    assert await shown(db, march_2, UTC) == []
    assert await shown(db, Filters(start=date(2026, 3, 1), end=date(2026, 3, 1)), UTC) == [late, early]


async def test_a_goals_events_are_its_own_its_tasks_and_its_cards(db: Database) -> None:
    ledger = TaskLedger(db)
    goal = await ledger.create_goal("find a sponsor", "s", "test")
    other = await ledger.create_goal("something else", "s", "test")
    [task] = await ledger.add_run(goal.id, [{"key": "t1", "title": "Look", "skill": "research", "instructions": "-"}])
    await db.write(
        "INSERT INTO approvals (id, root_id, thread, origin, kind, action, digest, approvers, nonce, created_at,"
        " expires_at, state, context) VALUES ('a1', 'a1', 's', 'goal', 'email.send', '{}', 'd', '[]', 'n', 'x', 'x',"
        " 'pending', ?)",
        (json.dumps({"goal_id": goal.id}),),
    )
    task_event = await log(db, "task.started", "2026-03-01T10:00:00+00:00", task_id=task.id)
    card_event = await log(db, "approval.shown", "2026-03-01T10:00:00+00:00", approval_id="a1")
    await log(db, "task.started", "2026-03-01T10:00:00+00:00", task_id="t-other")
    await log(db, "approval.shown", "2026-03-01T10:00:00+00:00", approval_id="a-other")
    [created] = await shown(db, Filters(kind="goal.created", goal=goal.id))
    [todo] = await shown(db, Filters(kind="task.todo", goal=goal.id))
    assert await shown(db, Filters(goal=goal.id)) == [created, todo, task_event, card_event]
    assert created not in await shown(db, Filters(goal=other.id))


async def test_a_contacts_events_name_it_as_a_whole_value(db: Database) -> None:
    records = Records(db)
    ana = await records.upsert("contact", {"name": "Ana", "emails": ["ana@example.org"]}, "test")
    [upserted] = await shown(db, Filters(kind="record.upserted"))
    to_ana = await log(db, "email.sent", "2026-03-01T10:00:00+00:00", to="ana@example.org")
    await log(db, "email.sent", "2026-03-01T10:00:00+00:00", to="ana@example.org.evil.test")
    await log(db, "email.sent", "2026-03-01T10:00:00+00:00", to="bob@example.org")
    assert await shown(db, Filters(contact=ana.id), records=records) == [upserted, to_ana]


async def test_paging_shows_what_came_before_and_the_query_string_keeps_the_filters(db: Database) -> None:
    ids = [await log(db, "a", "2026-03-01T10:00:00+00:00") for _ in range(3)]
    assert await shown(db, Filters(before=ids[2])) == ids[:2]
    filters = Filters(kind="a", start=date(2026, 3, 1))
    assert filters.query(before=ids[2]) == f"kind=a&from=2026-03-01&before={ids[2]}"
    assert not Filters(before=5).any
