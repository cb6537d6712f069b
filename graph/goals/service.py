"""Goals over their life: plan decisions, recurring runs, cancelling, the operator's buttons (Retry / Skip /
Cancel goal / Approve all). The status message is the board's (``board.py``), verification the verifier's
(``verify.py``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import datetime
from typing import TypeGuard

from graph.approvals.service import ApprovalService
from graph.buttons import Prefix, encode
from graph.goals.board import ButtonSpec, GoalBoard, Notifier
from graph.goals.plan_kind import previous_run, task_specs
from graph.goals.planner import Plan
from graph.goals.skills import all_skills
from graph.goals.verify import GoalVerifier
from graph.inbox.replies import ReplyWaits
from graph.models.llm import LLMClient
from graph.settings import TaskSettings
from graph.spend.budget import Limit
from memory.approvals import ApprovalRow
from memory.control import ControlStore
from memory.db import utcnow
from memory.goal_evidence import EvidenceStore
from memory.ledger import CostLedger
from memory.tasks import FINISHED, Goal, Task, TaskLedger, TransitionRefused
from prompts.messages import GOAL_CANCELLED, GOAL_FOLLOW_UP_NOT_APPROVED, GOAL_PLAN_NOT_APPROVED, TASK_BLOCKED

__all__ = ["ButtonSpec", "GoalService", "Notifier"]

log = logging.getLogger(__name__)
WORKING = ("active", "verifying")  # goal statuses in which its tasks run


class GoalService:
    """Everything about goals that is not running one task."""

    def __init__(
        self,
        ledger: TaskLedger,
        approvals: ApprovalService,
        llm: LLMClient,
        costs: CostLedger,
        control: ControlStore,
        notifier: Notifier,
        settings: TaskSettings,
        timezone: str,
        currency: str = "USD",
        skills: Collection[str] | None = None,
        evidence: EvidenceStore | None = None,
        replies: ReplyWaits | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """``currency`` is the operator's (spend is shown in it); ``skills``: what a verifier's follow-up task
        may use (None: every skill); ``evidence``: facts seen after the tasks ran (an invoice paid), which the
        verifier reads with the ledger's; ``replies``: answers to the goal's emails (with an inbox), shown to the
        verifier as quoted data and on the goal's board as who is awaited; ``clock``: now for the calendar
        (a recurring goal's next run, as shown)."""
        self._ledger = ledger
        self._approvals = approvals
        self._control = control
        self._notifier = notifier
        self._settings = settings
        self._tz = timezone
        self._board = GoalBoard(ledger, approvals, costs, notifier, settings, timezone, currency, replies, clock)
        usable = tuple(all_skills()) if skills is None else tuple(skills)
        self._verifier = GoalVerifier(
            ledger, approvals, llm, costs, self._board, notifier, usable, currency, self.limit, evidence, replies
        )

    @property
    def ledger(self) -> TaskLedger:
        """The task ledger."""
        return self._ledger

    @property
    def board(self) -> GoalBoard:
        """What the operator sees of goals: status messages, ``/goal`` and ``/goals``, task cards shown."""
        return self._board

    # -- the operator's buttons ------------------------------------------------------------------
    async def cancel(self, goal_id: str, actor: str) -> bool:
        """Cancel a goal: its unfinished tasks, and the cards its tasks are waiting on. A task running now
        proposes nothing more and is cancelled when its attempt ends (the runner asks the goal's status)."""
        goal = await self._ledger.goal(goal_id)
        if goal is None or goal.status in ("done", "failed", "cancelled"):
            return False
        # The goal first: from here on a running attempt proposes nothing, so no card escapes the expiry below.
        if not await self._ledger.move_goal(
            goal_id, ("planning", "proposed", "active", "verifying"), "cancelled", actor
        ):
            return False
        for task in await self._ledger.tasks(goal_id):
            if task.state not in FINISHED and task.state != "running":
                try:
                    await self._ledger.move(task.id, task.state, "cancelled", actor)
                except TransitionRefused:
                    continue
        await self.expire_cards(goal_id)
        await self._notifier.post(goal.session, GOAL_CANCELLED.format(goal_id=goal_id))
        self._board.touch(goal_id)
        return True

    async def expire_cards(self, goal_id: str) -> None:
        """Expire every card of a goal still waiting for a decision."""
        for row in await self._approvals.store.for_goal(goal_id):
            if row.state == "pending":
                await self._approvals.expire(row)

    async def retry(self, task_id: str, actor: str) -> Task:
        """A blocked task gets another round of attempts."""
        task = await self._ledger.move(task_id, "blocked", "ready", actor, attempts=0, error="", next_try_at=utcnow())
        self._board.touch(task.goal_id)
        return task

    async def skip(self, task_id: str, actor: str) -> Task:
        """A blocked task counts as done, with nothing to hand on."""
        result = {"summary": "skipped by the operator", "artifacts": []}
        task = await self._ledger.move(task_id, "blocked", "done", actor, result=result)
        self._board.touch(task.goal_id)
        return task

    async def blocked(self, task: Task, reason: str) -> None:
        """Tell the operator a task is blocked, with Retry / Skip / Cancel goal."""
        goal = await self._ledger.goal(task.goal_id)
        if goal is None:
            return
        buttons = (
            ("Retry", encode(Prefix.GOAL, "retry", task.id)),
            ("Skip", encode(Prefix.GOAL, "skip", task.id)),
            ("Cancel goal", encode(Prefix.GOAL, "cancel", goal.id)),
        )
        await self._notifier.post(
            goal.session, TASK_BLOCKED.format(task=task.title, goal_id=goal.id, reason=reason), buttons
        )
        self._board.touch(goal.id)

    # -- the sweep: plan decisions, verification, scheduled runs --------------------------------
    async def sweep(self, now: datetime) -> None:
        """Move goals along: a rejected plan ends its goal; a finished run is verified (again, when a process
        died while verifying it); a due run starts."""
        for goal in await self._ledger.goals(("proposed", "active", "verifying")):
            if goal.status == "proposed":
                await self._check_plan(goal, now)
            elif goal.status == "verifying":
                if self._left_verifying(goal, now):
                    await self._verifier.verify(goal)
            elif await self._run_finished(goal):
                await self._verifier.verify(goal)
            elif goal.schedule:
                await self._maybe_run(goal, now)

    def _left_verifying(self, goal: Goal, now: datetime) -> bool:
        """Nobody is verifying the goal any more: not this process, and no other one for a lease's time."""
        return not self._verifier.busy(goal.id) and self._quiet(goal, now)

    def _quiet(self, goal: Goal, now: datetime) -> bool:
        """The goal has not changed for a lease's time (whoever was moving it on has died)."""
        return (now - goal.updated_at).total_seconds() >= self._settings.lease_s

    async def _check_plan(self, goal: Goal, now: datetime) -> None:
        """A proposed goal waits on its newest plan card (after a run, the follow-up's; the first plan's card stays
        approved). Rejected or expired, the goal ends; so it does when no card waits at all, after a lease's time
        (the process that was to show one died)."""
        plans = [r for r in await self._approvals.store.for_goal(goal.id) if r.kind == "goal.plan"]
        newest = plans[-1] if plans else None
        declined = newest is not None and newest.state in ("rejected", "expired")
        if declined or (not await self._plan_waits(newest) and self._quiet(goal, now)):
            await self._end_unplanned(goal)

    async def _plan_waits(self, card: ApprovalRow | None) -> bool:
        """The plan card is still to be decided, or approved and not carried out yet."""
        if card is None or card.state in ("rejected", "expired", "superseded"):
            return False
        if card.state == "pending":
            return True
        outbox = await self._approvals.store.outbox(card.id)
        return outbox is None or outbox.state in ("queued", "running")

    async def _end_unplanned(self, goal: Goal) -> None:
        """No plan will run: a goal that ran is done with its last report, one that never ran is cancelled."""
        if await self._ledger.move_goal(goal.id, ("proposed",), "done" if goal.runs else "cancelled"):
            text = GOAL_FOLLOW_UP_NOT_APPROVED if goal.runs else GOAL_PLAN_NOT_APPROVED
            await self._notifier.post(goal.session, text.format(goal_id=goal.id))
            self._board.touch(goal.id)

    async def _run_finished(self, goal: Goal) -> bool:
        if goal.runs == 0 or goal.verified >= goal.runs:
            return False
        tasks = await self._ledger.tasks(goal.id, goal.runs)
        return bool(tasks) and all(t.state in FINISHED for t in tasks)

    async def _maybe_run(self, goal: Goal, now: datetime) -> None:
        assert goal.schedule is not None and goal.plan is not None
        due = previous_run(goal.schedule, now, self._tz)
        if due <= (goal.last_run_at or goal.updated_at) or due < goal.created_at:
            return
        if goal.runs and goal.verified < goal.runs:
            return  # the previous run is not finished: this slot waits for it
        # One run per slot, even across restarts and processes; a missed slot runs once after downtime.
        if not await self._control.claim_slot(f"goal:{goal.id}", due.isoformat()):
            return
        plan = Plan.model_validate(goal.plan)
        await self._ledger.add_run(goal.id, task_specs(plan), run=goal.runs + 1)
        log.info("goal %s: scheduled run %d (%s)", goal.id, goal.runs + 1, due.isoformat())
        self._board.touch(goal.id)

    async def evidence_arrived(self, goal_id: str, seen_at: datetime) -> bool:
        """New evidence for a goal: a goal judged not met since is verified again (see the verifier)."""
        return await self._verifier.evidence_arrived(goal_id, seen_at)

    async def working(self, goal_id: str) -> bool:
        """The goal's tasks may run: it is active or being verified (not cancelled, not ended)."""
        return working(await self._ledger.goal(goal_id))

    def limit(self, goal: Goal) -> Limit | None:
        """The goal's own budget, when it has one."""
        return Limit(goal.budget, goal.created_at) if goal.budget else None


def working(goal: Goal | None) -> TypeGuard[Goal]:
    """The goal's tasks may run: it exists and is active or being verified (not cancelled, not ended)."""
    return goal is not None and goal.status in WORKING
