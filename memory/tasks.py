"""The goal and task ledger (I7): goals, their tasks, a row per attempt, leases with heartbeats.

Every state change is a compare-and-set on the current state, written together with its event in the
event log. A task is claimed with a lease before it runs; a lease that expired (its process died) puts
the task back to ready, so it runs again, and because every outward effect of a task goes through the
approval and outbox path, a re-run never repeats an effect.

Its parts, one module each: the tables (``memory.task_schema``), the rows (``memory.task_rows``), a task's
states and moves (``memory.task_states``), its lease (``memory.task_leases``), its attempts
(``memory.task_attempts``). This module holds goals and the tasks of their runs.
"""

from __future__ import annotations

import json
from typing import Any

from memory.db import utcnow
from memory.task_attempts import AttemptEnd, TaskAttempts
from memory.task_leases import TaskLeases
from memory.task_rows import (
    SELECT_GOALS,
    SELECT_TASKS,
    Attempt,
    Goal,
    GoalStatus,
    Task,
    TaskState,
    new_id,
    read_goal,
    read_task,
)
from memory.task_schema import setup_task_tables
from memory.task_states import FINISHED, TRANSITIONS, TransitionRefused

__all__ = [
    "FINISHED", "TRANSITIONS", "Attempt", "AttemptEnd", "Goal", "GoalStatus", "Task", "TaskLedger", "TaskState",
    "TransitionRefused",
]  # fmt: skip


class TaskLedger(TaskLeases, TaskAttempts):
    """Goals, tasks and attempts in the application database."""

    async def setup(self) -> None:
        """Create the tables (``memory.task_schema``)."""
        await setup_task_tables(self._db)

    # -- goals ---------------------------------------------------------------------------------

    async def create_goal(
        self, text: str, session: str, requested_by: str, status: GoalStatus = "planning", goal_id: str | None = None
    ) -> Goal:
        """Record a new goal (idempotent for a given ``goal_id``)."""
        now = utcnow().isoformat()
        gid = goal_id or new_id("g")
        async with self._db.transaction() as tx:
            row = await tx.fetchone(f"{SELECT_GOALS} WHERE id = ?", (gid,))
            if row is not None:
                return read_goal(row)
            await tx.execute(
                "INSERT INTO goals (id, text, status, session, requested_by, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (gid, text, status, session, requested_by, now, now),
            )
            await tx.append_event("goal.created", requested_by, {"goal_id": gid, "status": status}, session=session)
        goal = await self.goal(gid)
        assert goal is not None
        return goal

    async def goal(self, goal_id: str) -> Goal | None:
        """One goal."""
        row = await self._db.fetchone(f"{SELECT_GOALS} WHERE id = ?", (goal_id,))
        return read_goal(row) if row else None

    async def goals(self, statuses: tuple[str, ...] | None = None) -> list[Goal]:
        """Goals, newest first, optionally in some statuses."""
        sql = f"{SELECT_GOALS}"
        args: tuple[Any, ...] = ()
        if statuses:
            sql += f" WHERE status IN ({', '.join('?' * len(statuses))})"
            args = statuses
        return [read_goal(r) for r in await self._db.fetchall(sql + " ORDER BY created_at DESC", args)]

    async def move_goal(
        self, goal_id: str, expect: tuple[str, ...], new: GoalStatus, actor: str = "coo", **fields: Any
    ) -> bool:
        """Compare-and-set a goal's status (with other fields); False when it was not in ``expect``."""
        encoded = {
            k: (json.dumps(v) if k in ("plan", "status_message") and v is not None else v) for k, v in fields.items()
        }
        encoded |= {"status": new, "updated_at": utcnow().isoformat()}
        assignments = ", ".join(f"{k} = ?" for k in encoded)
        async with self._db.transaction() as tx:
            written = await tx.execute(
                f"UPDATE goals SET {assignments} WHERE id = ? AND status IN ({', '.join('?' * len(expect))})",
                (*encoded.values(), goal_id, *expect),
            )
            if written.rowcount:
                await tx.append_event("goal." + new, actor, {"goal_id": goal_id})
        return written.rowcount == 1

    async def update_goal(self, goal_id: str, actor: str = "coo", **fields: Any) -> None:
        """Set goal fields (JSON-plain values are encoded); a status change is an event."""
        if not fields:
            return
        encoded = {
            k: (json.dumps(v) if k in ("plan", "status_message") and v is not None else v) for k, v in fields.items()
        }
        encoded["updated_at"] = utcnow().isoformat()
        assignments = ", ".join(f"{k} = ?" for k in encoded)
        async with self._db.transaction() as tx:
            await tx.execute(f"UPDATE goals SET {assignments} WHERE id = ?", (*encoded.values(), goal_id))
            if "status" in fields:
                await tx.append_event("goal." + str(fields["status"]), actor, {"goal_id": goal_id})

    # -- tasks ---------------------------------------------------------------------------------

    async def add_run(
        self, goal_id: str, tasks: list[dict[str, Any]], run: int | None = None, activation: str | None = None
    ) -> list[Task]:
        """Create the tasks of one run of a goal (idempotent: a run's tasks are created once).

        ``activation`` (an approval's idempotency key) is stored with the run, so an interrupted
        activation that runs again finds its run instead of starting another.
        """
        goal = await self.goal(goal_id)
        assert goal is not None
        number = run if run is not None else goal.runs + 1
        now = utcnow().isoformat()
        async with self._db.transaction() as tx:
            for seq, spec in enumerate(tasks):
                task_id = f"{goal_id}.{number}.{spec['key']}"
                written = await tx.execute(
                    "INSERT OR IGNORE INTO tasks (id, goal_id, run, seq, key, title, skill, instructions, depends_on, "
                    "expected, state, next_try_at, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,'todo',?,?,?)",
                    (
                        task_id, goal_id, number, seq, spec["key"], spec["title"], spec["skill"], spec["instructions"],
                        json.dumps([f"{goal_id}.{number}.{d}" for d in spec.get("depends_on", [])]),
                        spec.get("expected", ""), now, now, now,
                    ),
                )  # fmt: skip
                if written.rowcount:
                    await tx.append_event("task.todo", "coo", {"task_id": task_id, "goal_id": goal_id})
            await tx.execute(
                "UPDATE goals SET runs = MAX(runs, ?), last_run_at = ?, updated_at = ?, "
                "plan_approval = COALESCE(?, plan_approval) WHERE id = ?",
                (number, now, now, activation, goal_id),
            )
        return await self.tasks(goal_id, number)

    async def tasks(self, goal_id: str, run: int | None = None) -> list[Task]:
        """A goal's tasks (of one run, or of every run), in plan order."""
        if run is None:
            rows = await self._db.fetchall(f"{SELECT_TASKS} WHERE goal_id = ? ORDER BY run, seq", (goal_id,))
        else:
            rows = await self._db.fetchall(f"{SELECT_TASKS} WHERE goal_id = ? AND run = ? ORDER BY seq", (goal_id, run))
        return [read_task(r) for r in rows]

    async def board_goals(self, open_statuses: tuple[str, ...], limit: int) -> list[Goal]:
        """At most ``limit`` goals: those in ``open_statuses`` (newest first), then the latest updated others."""
        marks = ", ".join("?" * len(open_statuses))
        rows = await self._db.fetchall(
            f"{SELECT_GOALS} ORDER BY CASE WHEN status IN ({marks}) THEN 0 ELSE 1 END, "
            f"CASE WHEN status IN ({marks}) THEN created_at ELSE updated_at END DESC LIMIT ?",
            (*open_statuses, *open_statuses, limit),
        )
        return [read_goal(r) for r in rows]

    async def latest_run_tasks(self, goals: list[Goal]) -> dict[str, list[Task]]:
        """The tasks of each goal's latest run (every task of a goal without runs), in plan order: one query."""
        if not goals:
            return {}
        wanted = {g.id: g.runs for g in goals}
        rows = await self._db.fetchall(
            f"{SELECT_TASKS} WHERE goal_id IN ({', '.join('?' * len(wanted))}) ORDER BY run, seq",
            tuple(wanted),
        )
        found: dict[str, list[Task]] = {g.id: [] for g in goals}
        for task in map(read_task, rows):
            if not wanted[task.goal_id] or task.run == wanted[task.goal_id]:
                found[task.goal_id].append(task)
        return found
