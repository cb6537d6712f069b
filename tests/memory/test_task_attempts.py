"""An attempt finished in one transaction: its row closed, its goal checked, its task moved."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from memory.db import Database, open_database, utcnow
from memory.tasks import AttemptEnd, Task, TaskLedger, TransitionRefused

WORKING = ("active", "verifying")
SPEC = {"key": "t1", "title": "first", "skill": "research", "instructions": "do it"}


async def running_task(db: Database) -> tuple[TaskLedger, Task, int]:
    """A ledger with one active goal whose one task is claimed, and the id of its attempt's row."""
    ledger = TaskLedger(db)
    await ledger.setup()
    goal = await ledger.create_goal("g", "rec:1", "op", status="active")
    await ledger.add_run(goal.id, [SPEC])
    now = utcnow()
    await ledger.promote(now)
    task = await ledger.claim("worker-a", timedelta(seconds=60), now)
    assert task is not None
    return ledger, task, await ledger.start_attempt(task)


def ended(attempt_id: int, outcome: str = "done") -> AttemptEnd:
    return AttemptEnd(attempt_id, outcome, "", "fake-model", 0.01, [{"tool": "finish_task"}])


async def test_a_finished_attempt_closes_its_row_and_moves_its_task(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        ledger, task, attempt_id = await running_task(db)
        state = await ledger.finish_attempt(
            task.id, ended(attempt_id), "done", WORKING, lease_owner=None, result={"summary": "ok"}
        )
        moved = await ledger.task(task.id)
        [attempt] = await ledger.attempts(task.id)
    assert state == "done"
    assert moved is not None and (moved.state, moved.result, moved.lease_owner) == ("done", {"summary": "ok"}, None)
    assert (attempt.outcome, attempt.model, attempt.cost, attempt.trace) == (
        "done", "fake-model", 0.01, [{"tool": "finish_task"}],
    )  # fmt: skip
    assert attempt.ended_at is not None


async def test_an_attempt_whose_goal_was_cancelled_meanwhile_cancels_its_task(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        ledger, task, attempt_id = await running_task(db)
        assert await ledger.move_goal(task.goal_id, ("active",), "cancelled")
        state = await ledger.finish_attempt(task.id, ended(attempt_id), "done", WORKING, result={"summary": "ok"})
        moved = await ledger.task(task.id)
        [attempt] = await ledger.attempts(task.id)
    assert state == "cancelled"
    assert moved is not None and (moved.state, moved.result, moved.lease_owner) == ("cancelled", None, None)
    assert attempt.outcome == "done"  # what the attempt did is kept


async def test_a_refused_move_is_raised_and_the_attempt_is_closed_all_the_same(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        ledger, task, attempt_id = await running_task(db)
        await ledger.move(task.id, "running", "ready")  # another worker moved it on
        with pytest.raises(TransitionRefused):
            await ledger.finish_attempt(task.id, ended(attempt_id, "retry"), "done", WORKING)
        moved = await ledger.task(task.id)
        [attempt] = await ledger.attempts(task.id)
    assert moved is not None and moved.state == "ready"
    assert attempt.outcome == "retry" and attempt.ended_at is not None


async def test_nothing_is_written_when_the_move_cannot_be_written(tmp_path: Path) -> None:
    """One transaction: the move's event cannot be written (a real SQLite error), so the attempt's row stays open
    and the task running, instead of an attempt closed for a task that never moved."""
    async with open_database(tmp_path) as db:
        ledger, task, attempt_id = await running_task(db)
        await db.script("DROP TABLE events")
        with pytest.raises(Exception, match="events"):
            await ledger.finish_attempt(task.id, ended(attempt_id), "done", WORKING, result={"summary": "ok"})
        moved = await ledger.task(task.id)
        [attempt] = await ledger.attempts(task.id)
    assert moved is not None and moved.state == "running"
    assert attempt.outcome is None and attempt.ended_at is None
