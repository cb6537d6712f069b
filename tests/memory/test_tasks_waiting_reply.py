"""A ledger file from before tasks could wait for a reply: its tasks table (whose CHECK lists the states) is
rebuilt with the new state, keeping every row, its attempts and its indexes; opening it again changes nothing."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

from memory.db import open_database, utcnow
from memory.task_schema import TASKS_SCHEMA
from memory.tasks import TaskLedger

OLD_SCHEMA = TASKS_SCHEMA.replace("'waiting_approval','waiting_reply',", "'waiting_approval',").replace(
    "    resumes INTEGER NOT NULL DEFAULT 0,\n", ""
)
SPECS = [{"key": "t1", "title": "Email the sponsor", "skill": "outreach", "instructions": "pitch"}]


async def test_an_old_tasks_table_gets_the_waiting_reply_state_and_keeps_its_rows(tmp_path: Path) -> None:
    assert "waiting_reply" not in OLD_SCHEMA and "resumes" not in OLD_SCHEMA
    async with open_database(tmp_path) as db:
        await db.script(OLD_SCHEMA)
        now = utcnow().isoformat()
        await db.write(
            "INSERT INTO goals (id, text, status, session, requested_by, created_at, updated_at) "
            "VALUES ('g1', 'get a sponsor', 'active', 'rec:1', 'op', ?, ?)",
            (now, now),
        )
        await db.write(
            "INSERT INTO tasks (id, goal_id, run, seq, key, title, skill, instructions, state, attempts, next_try_at, "
            "waiting_on, notes, created_at, updated_at) VALUES ('g1.1.t1', 'g1', 1, 0, 't1', 'Email the sponsor', "
            "'outreach', 'pitch', 'waiting_approval', 1, ?, '[\"a-1\"]', '[\"attempt 1: proposed\"]', ?, ?)",
            (now, now, now),
        )
        await db.write("INSERT INTO task_attempts (task_id, attempt, started_at) VALUES ('g1.1.t1', 1, ?)", (now,))
        ledger = TaskLedger(db)
        await ledger.setup()
        await ledger.setup()  # a second start finds nothing to do
        kept = await ledger.task("g1.1.t1")
        assert kept is not None and kept.state == "waiting_approval" and kept.waiting_on == ("a-1",)
        assert kept.notes == ("attempt 1: proposed",) and kept.attempts == 1 and kept.resumes == 0
        due = utcnow() + timedelta(days=7)
        waiting = await ledger.move(kept.id, "waiting_approval", "waiting_reply", next_try_at=due)
        assert waiting.state == "waiting_reply" and waiting.next_try_at == due
        assert [a.attempt for a in await ledger.attempts(kept.id)] == [1]
        [more] = await ledger.add_run("g1", SPECS, run=2)  # the UNIQUE constraint and defaults came along
        assert more.state == "todo"
    with sqlite3.connect(tmp_path / "coo.sqlite") as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert {"tasks", "tasks_state", "tasks_goal", "task_attempts"} <= names and "tasks_migrating" not in names
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
