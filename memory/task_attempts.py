"""A row per attempt at a task: when it started and ended, how, with which model, at what cost, and its
trace."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from memory.db import Transaction, utcnow
from memory.task_rows import Attempt, Task, TaskState, read_attempt
from memory.task_states import TaskStates, TransitionRefused

CLOSE_ATTEMPT = (
    "UPDATE task_attempts SET ended_at = ?, outcome = ?, error = ?, model = ?, cost = ?, trace = ? WHERE id = ?"
)


@dataclass(frozen=True)
class AttemptEnd:
    """What an attempt did, written when its row is closed."""

    attempt_id: int
    outcome: str
    error: str
    model: str
    cost: float
    trace: list[dict[str, Any]] = field(default_factory=list)


class TaskAttempts(TaskStates):
    """Attempts started, ended and read (part of ``memory.tasks.TaskLedger``)."""

    async def start_attempt(self, task: Task) -> int:
        """A row for this attempt; returns its id."""
        written = await self._db.write(
            "INSERT INTO task_attempts (task_id, attempt, started_at) VALUES (?, ?, ?)",
            (task.id, task.attempts, utcnow().isoformat()),
        )
        assert written.lastrowid is not None
        return written.lastrowid

    async def end_attempt(
        self, attempt_id: int, outcome: str, error: str, model: str, cost: float, trace: list[dict[str, Any]]
    ) -> None:
        """Close an attempt with what it did, leaving its task where it is (the runner uses
        :meth:`finish_attempt`, which also moves the task)."""
        async with self._db.transaction() as tx:
            await _close(tx, AttemptEnd(attempt_id, outcome, error, model, cost, trace))

    async def finish_attempt(
        self, task_id: str, ended: AttemptEnd, new: TaskState, goal_in: tuple[str, ...], **fields: Any
    ) -> TaskState:
        """In one transaction: close the attempt's row, then move the running task to ``new`` (with ``fields``)
        when its goal's status is one of ``goal_in``, else cancel it (its goal stopped during the attempt).
        Returns the state the task took. A refused move (the task is no longer running) raises TransitionRefused;
        the attempt's row is closed all the same, as it did end."""
        refused: TransitionRefused | None = None
        async with self._db.transaction() as tx:
            await _close(tx, ended)
            goal = await tx.fetchone(
                "SELECT g.status FROM goals g JOIN tasks t ON t.goal_id = g.id WHERE t.id = ?", (task_id,)
            )
            if goal is None or goal[0] not in goal_in:
                new, fields = "cancelled", {"lease_owner": None}
            try:
                await self.move(task_id, "running", new, tx=tx, **fields)
            except TransitionRefused as error:
                refused = error
        if refused is not None:
            raise refused
        return new

    async def attempts(self, task_id: str) -> list[Attempt]:
        """Every attempt at a task, in order."""
        rows = await self._db.fetchall(
            f"SELECT {read_attempt.columns} FROM task_attempts WHERE task_id = ? ORDER BY id", (task_id,)
        )
        return [read_attempt(r) for r in rows]

    async def all_attempts(self) -> list[Attempt]:
        """Every attempt (for export)."""
        rows = await self._db.fetchall("SELECT DISTINCT task_id FROM task_attempts ORDER BY task_id")
        return [a for r in rows for a in await self.attempts(r[0])]


async def _close(tx: Transaction, ended: AttemptEnd) -> None:
    """An attempt's row closed with what it did."""
    row = (ended.outcome, ended.error, ended.model, ended.cost, json.dumps(ended.trace), ended.attempt_id)
    await tx.execute(CLOSE_ATTEMPT, (utcnow().isoformat(), *row))
