"""A waiting task resumed: once every card it waits on is decided (and an approved one executed), the task runs
again with what became of each card (and of what it sent without a card) in its notes; a task of a skill that
awaits answers waits for a reply instead; a task that went on too often is blocked and the operator asked."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from graph.approvals.service import ApprovalService
from graph.goals.executor import SkillExecutor
from graph.goals.service import GoalService
from graph.inbox.replies import ReplyWaits
from graph.settings import TaskSettings
from memory.tasks import Task, TaskLedger, TransitionRefused
from prompts.messages import TASK_RESTARTED_TOO_OFTEN


class WaitingTasks:
    """Moves tasks waiting on cards along once their cards are decided."""

    def __init__(
        self,
        ledger: TaskLedger,
        goals: GoalService,
        executor: SkillExecutor,
        approvals: ApprovalService,
        settings: TaskSettings,
        clock: Callable[[], datetime],
        replies: ReplyWaits | None,
    ) -> None:
        self._ledger = ledger
        self._goals = goals
        self._executor = executor
        self._approvals = approvals
        self._settings = settings
        self._clock = clock
        self._replies = replies

    async def resume(self) -> None:
        """A task waiting on cards runs again once every card is decided (and approved ones executed)."""
        for task in await self._ledger.in_state("waiting_approval"):
            notes, current, open_, sent = list(task.notes), [], False, []
            for approval_id in task.waiting_on:
                row = await self._approvals.current(approval_id, task.goal_id)
                if row is None:
                    continue
                current.append(row.id)
                outbox = await self._approvals.store.outbox(row.id) if row.state == "approved" else None
                in_flight = row.state == "approved" and (outbox is None or outbox.state in ("queued", "running"))
                if row.state == "pending" or in_flight:
                    open_ = True
                    continue
                done = outbox.state if outbox else row.state
                if done == "sent":
                    sent.append(row.id)
                kind = self._approvals.kind(row.kind)
                notes.append(f"card {row.id} ({kind.summary(kind.parse(row.action))}): {done}")
            if open_:
                if tuple(current) != task.waiting_on:
                    await self._ledger.set_waiting(task.id, current)
                continue
            notes += await self._uncarded_notes(task)
            if task.attempts >= self._settings.max_attempts:
                await self._block_restarts(task, notes)
                continue
            if await self._wait_for_replies(task, sent, notes):
                continue
            try:
                await self._ledger.move(
                    task.id,
                    "waiting_approval",
                    "ready",
                    notes=notes,
                    waiting_on=[],
                    next_try_at=self._clock(),
                    resumes=task.resumes + 1,  # what it proposed so far is decided and known to it now
                )
            except TransitionRefused:
                continue
            self._goals.board.touch(task.goal_id)

    async def _wait_for_replies(self, task: Task, sent: list[str], notes: list[str]) -> bool:
        """A task of a skill that awaits answers, whose emails went out, waits for a reply instead of going on."""
        if self._replies is None or not sent or not self._executor.awaits_replies(task.skill):
            return False
        if not await self._replies.start(task, sent, notes, self._clock()):
            return False
        self._goals.board.touch(task.goal_id)
        return True

    async def _block_restarts(self, task: Task, notes: list[str]) -> None:
        """A task that proposed and went on again and again (a rejection counts) is blocked: reject -> propose ->
        reject must end, and the operator decides (Retry gives it new attempts)."""
        error = TASK_RESTARTED_TOO_OFTEN.format(count=task.attempts)
        try:
            await self._ledger.move(task.id, "waiting_approval", "blocked", notes=notes, waiting_on=[], error=error)
        except TransitionRefused:
            return
        await self._goals.blocked(task, error)

    async def _uncarded_notes(self, task: Task) -> list[str]:
        """What this stretch of the task sent without a card (the operator's policy): the next attempt starts
        over, and without these lines it would not know those actions were done."""
        notes = []
        for row in await self._approvals.store.for_goal(task.goal_id):
            ours = row.context.get("task_id") == task.id and row.context.get("stretch") == task.resumes
            if ours and row.decided_by == "policy":
                outbox = await self._approvals.store.outbox(row.id)
                kind = self._approvals.kind(row.kind)
                summary = kind.summary(kind.parse(row.action))
                notes.append(f"without a card {row.id} ({summary}): {outbox.state if outbox else row.state}")
        return notes
