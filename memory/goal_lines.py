"""Goals in a backup (``goals.jsonl``): one goal per line, its tasks (every run) nested in it and each
task's attempts nested in the task. A line is then a whole unit, so most references (a task's goal, an
attempt's task, a task's dependencies) are checked inside the line, the way an approval carries its
outbox row. What was not finished is changed by ``bot/backup.py`` before it gets here."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from pydantic import AwareDatetime, Field, field_validator, model_validator

from memory.db import Database
from memory.lines import Line, Table, row_line
from memory.tasks import Attempt, Goal, Task, TaskLedger

log = logging.getLogger(__name__)


_AttemptFields: Any = row_line(Attempt, checks={"attempt": Field(ge=0), "cost": Field(ge=0)}, times=AwareDatetime)
_TaskFields: Any = row_line(
    Task,
    # How often a task went on after its cards were decided names its proposals while it runs; a restored
    # task runs no more (unfinished ones come back cancelled), so it starts again from 0.
    drop=("resumes",),
    checks={
        "id": Field(min_length=1), "run": Field(ge=1), "seq": Field(ge=0), "key": Field(min_length=1),
        "attempts": Field(ge=0),
    },
    times=AwareDatetime,
)  # fmt: skip
_GoalFields: Any = row_line(
    Goal, checks={"id": Field(min_length=1), "runs": Field(ge=0), "verified": Field(ge=0)}, times=AwareDatetime
)


class AttemptLine(_AttemptFields):
    """One attempt at a task (the fields of ``memory.tasks.Attempt``), nested in its task."""


class TaskLine(_TaskFields):
    """One task of a goal's run (the fields of ``memory.tasks.Task``), nested in its goal, with its attempts."""

    attempt_log: list[AttemptLine]

    @model_validator(mode="after")
    def _own_attempts(self) -> TaskLine:
        for attempt in self.attempt_log:
            if attempt.task_id != self.id:
                raise ValueError(f"task {self.id} lists an attempt of task {attempt.task_id}")
        return self


class GoalLine(_GoalFields):
    """A goal (the fields of ``memory.tasks.Goal``) with its tasks and their attempts."""

    tasks: list[TaskLine]

    @field_validator("due")
    @classmethod
    def _due(cls, value: str | None) -> str | None:
        if value is not None:
            datetime.fromisoformat(value)  # a date or a date and time
        return value

    @model_validator(mode="after")
    def _own_tasks(self) -> GoalLine:
        if len({task.id for task in self.tasks}) != len(self.tasks):
            raise ValueError(f"goal {self.id} lists the same task id twice")
        if len({(task.run, task.key) for task in self.tasks}) != len(self.tasks):
            raise ValueError(f"goal {self.id} lists two tasks with the same key in one run")
        run_of = {task.id: task.run for task in self.tasks}
        for task in self.tasks:
            if task.goal_id != self.id:
                raise ValueError(f"task {task.id} points to goal {task.goal_id} but is listed under goal {self.id}")
            if task.run > self.runs:
                raise ValueError(f"task {task.id} is of run {task.run} but goal {self.id} has {self.runs} runs")
            for dependency in task.depends_on:
                if dependency == task.id or run_of.get(dependency) != task.run:
                    raise ValueError(
                        f"task {task.id} depends on {dependency}, which is not another task of run {task.run} "
                        f"of goal {self.id}"
                    )
        return self


_GOALS = Table("goals", GoalLine, nested=("tasks",))
_TASKS = Table("tasks", TaskLine, nested=("attempt_log",), kept_out=("resumes",))
# The attempt's row id only orders a task's attempts; the order of the nested list keeps that.
_ATTEMPTS = Table("task_attempts", AttemptLine, kept_out=("id",))


class GoalLines:
    """The goal ledger's rows in a backup (``memory.portable``)."""

    name: ClassVar[str] = "goals"
    version: ClassVar[int] = 1
    line: ClassVar[type[Line]] = GoalLine
    tables: ClassVar[tuple[Table, ...]] = (_GOALS, _TASKS, _ATTEMPTS)

    def __init__(self, db: Database) -> None:
        self._db = db

    async def setup(self) -> None:
        """The ledger's tables, brought up to date as a start would."""
        await TaskLedger(self._db).setup()

    async def dump(self) -> list[dict[str, Any]]:
        """Every goal with its tasks (every run) and each task's attempts, as stored."""
        goals = [_GOALS.read(r) for r in await self._db.fetchall(_GOALS.select("ORDER BY created_at, id"))]
        tasks = [_TASKS.read(r) for r in await self._db.fetchall(_TASKS.select("ORDER BY goal_id, run, seq, id"))]
        attempts_of: dict[str, list[dict[str, Any]]] = {}
        for row in await self._db.fetchall(_ATTEMPTS.select("ORDER BY id")):
            attempt = _ATTEMPTS.read(row)
            attempts_of.setdefault(attempt["task_id"], []).append(attempt)
        tasks_of: dict[str, list[dict[str, Any]]] = {}
        for task in tasks:
            tasks_of.setdefault(task["goal_id"], []).append({**task, "attempt_log": attempts_of.get(task["id"], [])})
        # The ledger never writes a task without its goal or an attempt without its task; should a file
        # hold one anyway, the export says so instead of dropping it without a word.
        goal_ids = {goal["id"] for goal in goals}
        task_ids = {task["id"] for task in tasks}
        orphans = sorted({t["id"] for t in tasks if t["goal_id"] not in goal_ids} | (attempts_of.keys() - task_ids))
        if orphans:
            log.warning("export: tasks or attempts without their goal or task are not exported: %s", ", ".join(orphans))
        return [{**goal, "tasks": tasks_of.get(goal["id"], [])} for goal in goals]

    async def restore(self, lines: Sequence[GoalLine]) -> None:
        """Write the goals, their tasks and attempts as they are."""
        goals = [_GOALS.values(g) for g in lines]
        tasks = [_TASKS.values(t) for g in lines for t in g.tasks]
        attempts = [_ATTEMPTS.values(a) for g in lines for t in g.tasks for a in t.attempt_log]

        def work(conn: sqlite3.Connection) -> None:
            _GOALS.insert(conn, goals)
            _TASKS.insert(conn, tasks)
            _ATTEMPTS.insert(conn, attempts)

        await self._db.run_transaction(work)
