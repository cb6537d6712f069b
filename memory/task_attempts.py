"""A row per attempt at a task: when it started and ended, how, with which model, at what cost, and its
trace."""

from __future__ import annotations

import json
from typing import Any

from memory.db import utcnow
from memory.task_rows import Attempt, Task, read_attempt
from memory.task_states import TaskStates


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
        """Close an attempt with what it did."""
        await self._db.write(
            "UPDATE task_attempts SET ended_at = ?, outcome = ?, error = ?, model = ?, cost = ?, trace = ? "
            "WHERE id = ?",
            (utcnow().isoformat(), outcome, error, model, cost, json.dumps(trace), attempt_id),
        )

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
