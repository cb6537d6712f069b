"""One attempt of a claimed task, in one direction: gather what the ledger gives once (the goal, the attempt's
row, the results the task depends on), run the skill (which reads the replies the task awaits), then finish the
attempt in the ledger once (one transaction) and tell the goal's board. An unexpected error is caught where the
attempt starts and recorded as a failed attempt. A failed attempt is retried with backoff while attempts remain;
then the task is blocked and the operator asked."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from graph.goals.executor import SkillExecutor
from graph.goals.service import WORKING, GoalService, working
from graph.goals.skill_context import Outcome
from graph.settings import TaskSettings
from graph.spend.budget import Limit
from memory.tasks import AttemptEnd, Goal, Task, TaskLedger, TaskState, TransitionRefused

log = logging.getLogger(__name__)

INTERNAL_ERROR = "an internal error (logged)"


@dataclass(frozen=True)
class Brief:
    """What an attempt starts from, read once before it acts."""

    goal: Goal
    attempt_id: int
    inputs: str  # the results of the tasks it depends on
    limit: Limit | None  # the goal's own budget


@dataclass(frozen=True)
class Settled:
    """Where an attempt leaves its task: the state, the fields written with it, and what the operator is told."""

    state: TaskState
    fields: dict[str, Any] = field(default_factory=dict)
    blocked: str | None = None  # the reason shown, when the task is blocked


# The goal was cancelled during the attempt: the task is cancelled too.
CANCELLED = Settled("cancelled", {"lease_owner": None})


@dataclass(frozen=True)
class Ending:
    """How an attempt ended: its outcome, the attempt's row to close (None: it failed unexpectedly, and its row
    stays open), and the session the operator is told in."""

    session: str
    attempt_id: int | None
    outcome: Outcome


# The attempt failed unexpectedly (logged): retried while attempts remain.
FAILED = Ending("", None, Outcome("retry", error=INTERNAL_ERROR))


class TaskAttempt:
    """Runs one attempt of a task that this runner claimed (its lease is kept by the caller)."""

    def __init__(
        self,
        ledger: TaskLedger,
        goals: GoalService,
        executor: SkillExecutor,
        settings: TaskSettings,
        clock: Callable[[], datetime],
    ) -> None:
        self._ledger = ledger
        self._goals = goals
        self._executor = executor
        self._settings = settings
        self._clock = clock

    async def carry_out(self, task: Task) -> None:
        """Gather, act, record. An unexpected error is logged where it stops the attempt and counts as a failed
        attempt: recorded in place of an outcome it came before, or instead of one that could not be recorded."""
        try:
            ending = await self._act(task)
        except Exception:
            log.exception("task %s: the attempt failed unexpectedly", task.id)
            ending = FAILED
        if ending is not None:
            await self._record(task, ending)

    async def _act(self, task: Task) -> Ending | None:
        """Gather, then run the skill; None (and the task cancelled) when its goal stopped."""
        brief = await self._gather(task)
        if brief is None:
            return None
        goal_id = brief.goal.id
        outcome = await self._executor.run(
            brief.goal, task, brief.inputs, brief.limit, lambda: self._goals.working(goal_id)
        )
        return Ending(brief.goal.session, brief.attempt_id, outcome)

    async def _gather(self, task: Task) -> Brief | None:
        """Everything the attempt reads before it acts; None (and the task cancelled) when its goal stopped."""
        goal = await self._ledger.goal(task.goal_id)
        if not working(goal):
            await self._ledger.move(task.id, "running", "cancelled")
            return None
        attempt_id = await self._ledger.start_attempt(task)
        depends_on = [await self._ledger.task(dep_id) for dep_id in task.depends_on]
        inputs = dependency_results(dep for dep in depends_on if dep is not None)
        return Brief(goal, attempt_id, inputs, self._goals.limit(goal))

    async def _record(self, task: Task, ending: Ending) -> None:
        """Record the attempt's ending; when that fails (the ledger refused it), the error is logged and a failed
        attempt recorded instead. A failure that cannot be recorded because the task moved on already is let be."""
        while True:
            try:
                await self._write(task, ending)
                return
            except Exception as error:
                if ending is FAILED:
                    if isinstance(error, TransitionRefused):
                        return
                    raise
                log.exception("task %s: the attempt failed unexpectedly", task.id)
                ending = FAILED

    async def _write(self, task: Task, ending: Ending) -> None:
        """Write the ledger once: the attempt's row closed (unless it failed unexpectedly) and the task moved
        (cancelled instead, when its goal was cancelled during the attempt); then tell the board and the operator
        (in the goal's session)."""
        outcome = ending.outcome
        settled = settle(task, outcome, self._retry_at(task))
        if ending.attempt_id is None:
            await self._ledger.move(task.id, "running", settled.state, **settled.fields)
        else:
            ended = AttemptEnd(
                ending.attempt_id, outcome.kind, outcome.error, outcome.model, outcome.cost, list(outcome.trace)
            )
            moved = await self._ledger.finish_attempt(task.id, ended, settled.state, WORKING, **settled.fields)
            if moved == "cancelled":
                settled = CANCELLED
        if settled.blocked is not None:
            await self._goals.blocked(task, settled.blocked)
        for approval_id in settled.fields.get("waiting_on", ()):
            await self._goals.board.show_card(approval_id, ending.session)
        if settled.state == "cancelled":
            # A card proposed while the goal was being cancelled (after the cancel expired the cards it found).
            await self._goals.expire_cards(task.goal_id)

    def _retry_at(self, task: Task) -> datetime | None:
        """When a failed attempt of ``task`` is tried again (backoff); None when it has no attempt left."""
        if task.attempts >= self._settings.max_attempts:
            return None
        return self._clock() + timedelta(seconds=self._settings.retry_base_s * (2 ** (task.attempts - 1)))


def settle(task: Task, outcome: Outcome, retry_at: datetime | None) -> Settled:
    """Where an attempt's ``outcome`` leaves ``task`` (its goal still working): done, waiting on its cards,
    blocked, or (a failure) ready again at ``retry_at`` while attempts remain (None: none left), else blocked."""
    ended: dict[str, Any] = {"lease_owner": None}
    if outcome.kind == "done":
        return Settled("done", {**ended, "result": outcome.result})
    if outcome.kind == "waiting":
        return Settled("waiting_approval", {**ended, "waiting_on": list(outcome.waiting_on)})
    if outcome.kind == "blocked":
        return Settled("blocked", {**ended, "error": outcome.error}, blocked=outcome.error)
    if retry_at is None:
        reason = f"{outcome.error} (after {task.attempts} attempts)"
        return Settled("blocked", {**ended, "error": outcome.error}, blocked=reason)
    notes = [*task.notes, f"attempt {task.attempts} failed: {outcome.error[:200]}"]
    return Settled("ready", {**ended, "error": outcome.error, "notes": notes, "next_try_at": retry_at})


def dependency_results(done: Iterable[Task]) -> str:
    """The results of the tasks an attempt depends on: summaries and references, never transcripts."""
    lines = []
    for dep in done:
        if dep.result:
            artifacts = ", ".join(dep.result.get("artifacts", [])) or "none"
            lines.append(f"{dep.key} ({dep.title}): {dep.result.get('summary', '')} [artifacts: {artifacts}]")
    return "\n".join(lines)
