"""The task ledger: every allowed transition (each with its event), refused ones, leases and attempts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from memory.db import Database, open_database, utcnow
from memory.task_schema import TASKS_SCHEMA
from memory.task_states import TRANSITIONS
from memory.tasks import TaskLedger, TransitionRefused

SPECS: list[dict[str, Any]] = [
    {"key": "t1", "title": "first", "skill": "research", "instructions": "do it"},
    {"key": "t2", "title": "second", "skill": "draft", "instructions": "then this", "depends_on": ["t1"]},
]


async def ledger_in(db: Database) -> TaskLedger:
    ledger = TaskLedger(db)
    await ledger.setup()
    return ledger


def test_the_transition_table_allows_no_way_out_of_a_finished_task() -> None:
    for state in ("done", "failed", "cancelled"):
        assert TRANSITIONS[state] == frozenset()
    assert "running" not in TRANSITIONS["todo"]  # a task starts only once it is ready


async def test_every_allowed_transition_moves_and_is_an_event(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        ledger = await ledger_in(db)
        goal = await ledger.create_goal("g", "rec:1", "op")
        moved = 0
        for start, targets in TRANSITIONS.items():
            for target in targets:
                [task, _] = await ledger.add_run(goal.id, SPECS, run=moved + 1)
                await _bring(ledger, task.id, start)
                after = await ledger.move(task.id, start, target)  # type: ignore[arg-type]
                assert after.state == target
                moved += 1
        events = await db.events(kind=tuple(f"task.{s}" for s in TRANSITIONS), limit=10_000)
    assert moved == sum(len(t) for t in TRANSITIONS.values())
    assert len([e for e in events if e.payload.get("from")]) >= moved


async def _bring(ledger: TaskLedger, task_id: str, state: str) -> None:
    """Walk a new (todo) task to ``state`` along allowed transitions."""
    path = {
        "todo": [],
        "ready": ["ready"],
        "running": ["ready", "running"],
        "waiting_approval": ["ready", "running", "waiting_approval"],
        "waiting_reply": ["ready", "running", "waiting_approval", "waiting_reply"],
        "blocked": ["ready", "running", "blocked"],
        "done": ["ready", "running", "done"],
        "failed": ["ready", "running", "failed"],
        "cancelled": ["cancelled"],
    }[state]
    current = "todo"
    for step in path:
        await ledger.move(task_id, current, step)  # type: ignore[arg-type]
        current = step


async def test_a_transition_not_in_the_table_or_from_the_wrong_state_is_refused(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        ledger = await ledger_in(db)
        goal = await ledger.create_goal("g", "rec:1", "op")
        [task, _] = await ledger.add_run(goal.id, SPECS)
        with pytest.raises(TransitionRefused):
            await ledger.move(task.id, "todo", "running")  # not allowed
        with pytest.raises(TransitionRefused):
            await ledger.move(task.id, "ready", "running")  # it is not ready
        assert (await ledger.task(task.id)).state == "todo"  # type: ignore[union-attr]


async def test_dependencies_leases_and_expiry(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        ledger = await ledger_in(db)
        goal = await ledger.create_goal("g", "rec:1", "op")
        first, second = await ledger.add_run(goal.id, SPECS)
        assert await ledger.add_run(goal.id, SPECS, run=1) == [first, second]  # a run's tasks are made once
        now = utcnow()
        assert [t.id for t in await ledger.promote(now)] == [first.id]  # t2 waits for t1
        claimed = await ledger.claim("worker-a", timedelta(seconds=60), now)
        assert claimed is not None and claimed.id == first.id and claimed.attempts == 1
        assert await ledger.claim("worker-b", timedelta(seconds=60), now) is None  # nothing else is ready
        assert await ledger.heartbeat(first.id, "worker-a", now + timedelta(seconds=120))
        assert not await ledger.heartbeat(first.id, "worker-b", now)  # not b's lease
        assert await ledger.expire_leases(now + timedelta(seconds=60)) == []  # extended by the heartbeat
        [expired] = await ledger.expire_leases(now + timedelta(seconds=121))  # its worker died
        assert expired.state == "ready" and expired.lease_owner is None
        again = await ledger.claim("worker-b", timedelta(seconds=60), now + timedelta(seconds=121))
        assert again is not None and again.attempts == 2  # a row per attempt
        attempt = await ledger.start_attempt(again)
        await ledger.move(first.id, "running", "done", result={"summary": "ok", "artifacts": []})
        await ledger.end_attempt(attempt, "done", "", "m", 0.01, [{"step": "model"}])
        assert [t.id for t in await ledger.promote(now)] == [second.id]
        attempts = await ledger.attempts(first.id)
    assert [(a.attempt, a.outcome, a.cost) for a in attempts] == [(2, "done", 0.01)]


async def test_concurrent_claims_give_a_task_to_one_worker(tmp_path: Path) -> None:
    import asyncio

    async with open_database(tmp_path) as db:
        ledger = await ledger_in(db)
        goal = await ledger.create_goal("g", "rec:1", "op")
        await ledger.add_run(goal.id, SPECS[:1])
        now = utcnow()
        await ledger.promote(now)
        got = await asyncio.gather(*(ledger.claim(f"w{i}", timedelta(seconds=60), now) for i in range(5)))
    assert len([g for g in got if g is not None]) == 1


async def test_a_ledger_from_before_named_proposals_gets_its_resumes_column(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        old_schema = TASKS_SCHEMA.replace("    resumes INTEGER NOT NULL DEFAULT 0,\n", "")
        assert "resumes" not in old_schema
        await db.script(old_schema)
        ledger = await ledger_in(db)
        goal = await ledger.create_goal("g", "rec:1", "op")
        [task, _] = await ledger.add_run(goal.id, SPECS)
        moved = await ledger.move(task.id, "todo", "ready", resumes=task.resumes + 1)
    assert task.resumes == 0 and moved.resumes == 1


async def test_the_board_reads_open_goals_first_then_the_latest_finished_with_their_latest_runs(
    tmp_path: Path,
) -> None:
    async with open_database(tmp_path) as db:
        ledger = await ledger_in(db)
        finished_early = await ledger.create_goal("finished early", "rec:1", "op", "done")
        older = await ledger.create_goal("older open", "rec:1", "op", "active")
        finished_late = await ledger.create_goal("finished late", "rec:1", "op", "active")
        newer = await ledger.create_goal("newer open", "rec:1", "op", "proposed")
        await ledger.move_goal(finished_late.id, ("active",), "failed")  # updated after finished_early
        await ledger.add_run(older.id, SPECS)
        await ledger.add_run(older.id, SPECS[:1])  # a second run: only its task is on the board
        await ledger.add_run(newer.id, SPECS)
        goals = await ledger.board_goals(("planning", "proposed", "active", "verifying"), 3)
        tasks = await ledger.latest_run_tasks(goals)
    assert [g.text for g in goals] == ["newer open", "older open", "finished late"]
    assert finished_early.id not in tasks
    assert [(t.run, t.key) for t in tasks[older.id]] == [(2, "t1")]
    assert [t.key for t in tasks[newer.id]] == ["t1", "t2"] and tasks[finished_late.id] == []
