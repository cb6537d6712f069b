"""What a goal, a task and an attempt are as stored, and how they are read (``memory.rows``)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from memory.rows import RowReader

GoalStatus = Literal["planning", "proposed", "active", "verifying", "done", "failed", "cancelled"]
TaskState = Literal[
    "todo", "ready", "running", "waiting_approval", "waiting_reply", "blocked", "done", "failed", "cancelled"
]


@dataclass(frozen=True)
class Goal:
    """One goal as stored."""

    id: str
    text: str
    criteria: str
    due: str | None
    budget: float | None
    status: GoalStatus
    session: str
    requested_by: str
    plan: dict[str, Any] | None
    plan_approval: str | None
    schedule: str | None
    runs: int
    last_run_at: datetime | None
    report: str
    status_message: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    verified: int = 0

    @property
    def workflow(self) -> str:
        """The budget workflow its model calls count against."""
        return f"goal-{self.id}"


@dataclass(frozen=True)
class Task:
    """One task of one run of a goal."""

    id: str
    goal_id: str
    run: int
    seq: int
    key: str
    title: str
    skill: str
    instructions: str
    depends_on: tuple[str, ...]
    expected: str
    state: TaskState
    attempts: int
    next_try_at: datetime
    lease_owner: str | None
    lease_until: datetime | None
    waiting_on: tuple[str, ...]
    notes: tuple[str, ...]
    result: dict[str, Any] | None
    error: str
    created_at: datetime
    updated_at: datetime
    resumes: int = 0
    """How often the task went on after its cards were decided: its proposals are named within one stretch
    between two of these, so a re-run of the same stretch finds them (I7) and a later stretch may propose anew."""


@dataclass(frozen=True)
class Attempt:
    """One attempt at a task: when, how it ended, what it cost and what it did."""

    task_id: str
    attempt: int
    started_at: datetime
    ended_at: datetime | None
    outcome: str | None
    error: str
    model: str
    cost: float
    trace: list[dict[str, Any]]


read_goal = RowReader(Goal)
read_task = RowReader(Task)
read_attempt = RowReader(Attempt)


def new_id(prefix: str) -> str:
    """A short readable id: ``g-7k2m``."""
    return prefix + "".join(secrets.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(5))


SELECT_GOALS = f"SELECT {read_goal.columns} FROM goals"
SELECT_TASKS = f"SELECT {read_task.columns} FROM tasks"
