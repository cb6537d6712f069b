"""The goal ledger's rows in a backup (``memory.goal_lines``), on real SQLite files: a goal comes back with
its tasks and their attempts as they were, a line that contradicts itself is refused with one error, and
a restore that fails writes nothing."""

from __future__ import annotations

import logging
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from memory.db import Database, open_database, utcnow
from memory.goal_lines import GoalLine, GoalLines
from memory.tasks import TaskLedger

OPERATOR = "telegram:1001"


def spec(key: str, depends_on: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "key": key,
        "title": key.upper(),
        "skill": "research",
        "instructions": f"do {key}",
        "depends_on": depends_on,
    }


async def one_goal_run(db: Database) -> str:
    """A goal with one run of two tasks: the first done after one attempt, the second still todo."""
    ledger = TaskLedger(db)
    await ledger.setup()
    goal = await ledger.create_goal("Find a sponsor", OPERATOR, OPERATOR, status="active")
    await ledger.add_run(goal.id, [spec("a"), spec("b", ("a",))])
    now = utcnow()
    await ledger.promote(now)
    task = await ledger.claim("worker-1", timedelta(minutes=5), now)
    assert task is not None
    attempt = await ledger.start_attempt(task)
    await ledger.end_attempt(attempt, "done", "", "fake-model", 0.01, [{"tool": "search", "args": {"q": "x"}}])
    await ledger.move(task.id, "running", "done", result={"summary": "three leads"}, lease_owner=None)
    return goal.id


async def lines_of(data_dir: Path) -> list[dict[str, Any]]:
    async with open_database(data_dir) as db:
        store = GoalLines(db)
        await store.setup()
        return await store.dump()


async def test_a_goal_comes_back_with_its_tasks_and_attempts_as_they_were(tmp_path: Path) -> None:
    async with open_database(tmp_path / "a") as db:
        goal_id = await one_goal_run(db)
        ledger = TaskLedger(db)
        before = (await ledger.goal(goal_id), await ledger.tasks(goal_id), await ledger.attempts(f"{goal_id}.1.a"))
    dumped = await lines_of(tmp_path / "a")
    assert [len(g["tasks"]) for g in dumped] == [2]
    assert [len(t["attempt_log"]) for t in dumped[0]["tasks"]] == [1, 0]

    async with open_database(tmp_path / "b") as db:
        store = GoalLines(db)
        await store.setup()
        await store.restore([GoalLine.model_validate(line) for line in dumped])
        ledger = TaskLedger(db)
        after = (await ledger.goal(goal_id), await ledger.tasks(goal_id), await ledger.attempts(f"{goal_id}.1.a"))
    assert after == before
    assert await lines_of(tmp_path / "b") == dumped


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda g: g["tasks"][1].update(goal_id="g-other"), "points to goal g-other"),
        (lambda g: g["tasks"][1].update(depends_on=["g-nowhere.1.a"]), "depends on g-nowhere.1.a"),
        (lambda g: g["tasks"][0]["attempt_log"][0].update(task_id="t-other"), "lists an attempt of task t-other"),
        (lambda g: g["tasks"][1].update(id=g["tasks"][0]["id"]), "the same task id twice"),
        (lambda g: g.update(runs=0), "has 0 runs"),
        (lambda g: g["tasks"][0].update(next_try_at="2026-03-02T09:00:00"), "timezone"),
        (lambda g: g.update(due="next week"), "Invalid isoformat"),
        (lambda g: g.update(colour="red"), "Extra inputs are not permitted"),
    ],
)
async def test_a_line_that_contradicts_itself_is_refused(tmp_path: Path, change: Any, error: str) -> None:
    async with open_database(tmp_path) as db:
        await one_goal_run(db)
    (line,) = await lines_of(tmp_path)
    change(line)
    with pytest.raises(ValidationError, match=error):
        GoalLine.model_validate(line)


async def test_a_restore_that_fails_writes_nothing(tmp_path: Path) -> None:
    async with open_database(tmp_path / "a") as db:
        await one_goal_run(db)
        await one_goal_run(db)
    dumped = [GoalLine.model_validate(line) for line in await lines_of(tmp_path / "a")]
    async with open_database(tmp_path / "b") as db:
        store = GoalLines(db)
        await store.setup()
        await store.restore(dumped[1:])
        with pytest.raises(sqlite3.IntegrityError):
            await store.restore(dumped)  # the second goal is there already: the first must not be written either
        assert [g.id for g in await TaskLedger(db).goals()] == [dumped[1].id]
        assert (await db.fetchone("SELECT COUNT(*) FROM task_attempts"))[0] == 1


async def test_a_task_without_its_goal_is_named_in_the_log_not_dropped_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_database(tmp_path) as db:
        goal_id = await one_goal_run(db)
        now = utcnow().isoformat()
        await db.write(  # a row the ledger never writes: a task whose goal is gone
            "INSERT INTO tasks (id, goal_id, run, seq, key, title, skill, instructions, state, next_try_at, "
            "created_at, updated_at) VALUES ('g-gone.1.x', 'g-gone', 1, 0, 'x', 'X', 'research', '', 'todo', ?, ?, ?)",
            (now, now, now),
        )
    with caplog.at_level(logging.WARNING, logger="memory.goal_lines"):
        dumped = await lines_of(tmp_path)
    assert [g["id"] for g in dumped] == [goal_id]
    assert "g-gone.1.x" in caplog.text
