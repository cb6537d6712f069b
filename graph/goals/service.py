"""Goals over their life: plan decisions, one progress message per goal, verification, recurring runs,
cancelling, the operator's buttons (Retry / Skip / Cancel goal / Approve all)."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError

from graph.approvals.service import ApprovalService
from graph.conversation.context import as_data
from graph.errors import ModelUnavailable
from graph.goals.plan_kind import PlanAction, next_run, previous_run, task_specs
from graph.goals.planner import Plan, PlannedTask
from graph.goals.skill_graph import FINISH
from graph.goals.skills import all_skills
from graph.goals.verify import VERDICT_TOOL, Reading, ledger_facts, read_verdict, verdict_tool
from graph.models.llm import LLMClient, force_tool
from graph.settings import TaskSettings
from graph.spend.budget import BudgetExceeded, Limit
from memory.approvals import ApprovalRow
from memory.control import ControlStore
from memory.db import utcnow
from memory.ledger import CostLedger
from memory.tasks import FINISHED, Goal, GoalStatus, Task, TaskLedger, TransitionRefused
from prompts import load_prompt
from prompts.messages import (
    GOAL_CANCELLED,
    GOAL_DONE,
    GOAL_FOLLOW_UP_NOT_APPROVED,
    GOAL_NOT_MET,
    GOAL_NOT_VERIFIED,
    GOAL_PLAN_NOT_APPROVED,
    TASK_BLOCKED,
    money,
    plural,
)

log = logging.getLogger(__name__)
VERIFY_MAX_TOKENS = 2048
VERIFY_TEMPERATURE = 0.0

ButtonSpec = tuple[tuple[str, str], ...]
MARK = {
    "done": "[done]",
    "running": "[running]",
    "waiting_approval": "[waiting for you]",
    "ready": "[next]",
    "todo": "[later]",
    "blocked": "[blocked]",
    "failed": "[failed]",
    "cancelled": "[cancelled]",
}


class Notifier(Protocol):
    """How the goal layer talks to the operator (the edge implements it; graph/ never imports bot/)."""

    async def post(self, session: str, text: str, buttons: ButtonSpec = (), replace: str | None = None) -> str | None:
        """Send (or, with ``replace``, edit) a message in a session's chat; returns the message id."""
        ...

    async def show_card(self, approval_id: str, session: str) -> None:
        """Show an approval card in a session's chat."""
        ...


@dataclass
class _Board:
    dirty: set[str] = field(default_factory=set)
    posted_at: dict[str, datetime] = field(default_factory=dict)


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
    ) -> None:
        """``currency`` is the operator's (spend is shown in it); ``skills``: what a verifier's follow-up task
        may use (None: every skill)."""
        self._ledger = ledger
        self._skills = tuple(all_skills()) if skills is None else tuple(skills)
        self._approvals = approvals
        self._llm = llm
        self._costs = costs
        self._control = control
        self._notifier = notifier
        self._settings = settings
        self._tz = timezone
        self._currency = currency
        self._board = _Board()
        self._verifying: set[str] = set()  # goals this process is verifying now

    @property
    def ledger(self) -> TaskLedger:
        """The task ledger."""
        return self._ledger

    # -- progress -------------------------------------------------------------------------------
    def touch(self, goal_id: str) -> None:
        """Something changed: the goal's status message is due for an edit (rate-limited)."""
        self._board.dirty.add(goal_id)

    async def flush_progress(self, now: datetime, force: bool = False) -> int:
        """Edit the status message of each changed goal, at most once per ``progress_interval_s``."""
        edited = 0
        for goal_id in sorted(self._board.dirty):
            last = self._board.posted_at.get(goal_id)
            if not force and last is not None and (now - last).total_seconds() < self._settings.progress_interval_s:
                continue
            self._board.dirty.discard(goal_id)
            goal = await self._ledger.goal(goal_id)
            if goal is None or goal.status in ("planning", "proposed"):
                continue
            text, buttons = await self.status(goal)
            replace = (goal.status_message or {}).get("message_id")
            message_id = await self._notifier.post(goal.session, text, buttons, replace)
            self._board.posted_at[goal_id] = now
            edited += 1
            if message_id and message_id != replace:
                await self._ledger.update_goal(goal_id, status_message={"message_id": message_id})
        return edited

    async def status(self, goal: Goal) -> tuple[str, ButtonSpec]:
        """The goal's status message: done/total, what runs, what waits on the operator, spend."""
        tasks = await self._ledger.tasks(goal.id, goal.runs or None) if goal.runs else []
        waiting = await self.waiting_cards(goal)
        done = sum(t.state == "done" for t in tasks)
        running = [t.title for t in tasks if t.state == "running"]
        head = f"Goal {goal.id}: {goal.text[:200]}"
        lines = [head, f"Status: {goal.status}" + (f" (run {goal.runs})" if goal.schedule else "")]
        if tasks:
            lines.append(
                f"Progress: {done}/{len(tasks)} done" + (f"; running: {', '.join(running)}" if running else "")
            )
            lines += [f"{n}. {MARK[t.state]} {t.title}" for n, t in enumerate(tasks, 1)]
        if waiting:
            lines.append(f"Waiting on you: {plural(len(waiting), 'card')}")
            lines += [f"- {self._summary(row)} (approval {row.id})" for row in waiting]
        if goal.schedule and goal.status == "active":
            lines.append(f"Next run: {next_run(goal.schedule, utcnow(), self._tz):%Y-%m-%d %H:%M} UTC")
        spent = await self._costs.spent(goal.created_at, goal.workflow)
        lines.append(f"Spent: {money(spent, self._currency)}")
        if goal.report and goal.status in ("done", "failed"):
            lines.append(goal.report)
        buttons: list[tuple[str, str]] = []
        if waiting:
            buttons.append((f"Approve all {len(waiting)}", f"gl:all:{goal.id}"))
        if goal.status not in ("done", "failed", "cancelled"):
            buttons.append(("Cancel goal", f"gl:cancel:{goal.id}"))
        return "\n".join(lines), tuple(buttons)

    async def show_card(self, approval_id: str, session: str) -> None:
        """Show a task's card where its goal was set, once."""
        row = await self._approvals.store.get(approval_id)
        if row is not None and not any(c.message_id for c in row.cards):
            await self._notifier.show_card(approval_id, session)

    async def waiting_cards(self, goal: Goal) -> list[ApprovalRow]:
        """The goal's task cards still waiting for a decision."""
        return [r for r in await self._approvals.store.for_goal(goal.id) if r.state == "pending" and r.origin == "task"]

    def _summary(self, row: ApprovalRow) -> str:
        kind = self._approvals.kind(row.kind)
        return kind.summary(kind.parse(row.action))

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
        self.touch(goal_id)
        return True

    async def expire_cards(self, goal_id: str) -> None:
        """Expire every card of a goal still waiting for a decision."""
        for row in await self._approvals.store.for_goal(goal_id):
            if row.state == "pending":
                await self._approvals.expire(row)

    async def retry(self, task_id: str, actor: str) -> Task:
        """A blocked task gets another round of attempts."""
        task = await self._ledger.move(task_id, "blocked", "ready", actor, attempts=0, error="", next_try_at=utcnow())
        self.touch(task.goal_id)
        return task

    async def skip(self, task_id: str, actor: str) -> Task:
        """A blocked task counts as done, with nothing to hand on."""
        result = {"summary": "skipped by the operator", "artifacts": []}
        task = await self._ledger.move(task_id, "blocked", "done", actor, result=result)
        self.touch(task.goal_id)
        return task

    async def blocked(self, task: Task, reason: str) -> None:
        """Tell the operator a task is blocked, with Retry / Skip / Cancel goal."""
        goal = await self._ledger.goal(task.goal_id)
        if goal is None:
            return
        buttons = (
            ("Retry", f"gl:retry:{task.id}"),
            ("Skip", f"gl:skip:{task.id}"),
            ("Cancel goal", f"gl:cancel:{goal.id}"),
        )
        await self._notifier.post(
            goal.session, TASK_BLOCKED.format(task=task.title, goal_id=goal.id, reason=reason), buttons
        )
        self.touch(goal.id)

    # -- the sweep: plan decisions, verification, scheduled runs --------------------------------
    async def sweep(self, now: datetime) -> None:
        """Move goals along: a rejected plan ends its goal; a finished run is verified (again, when a process
        died while verifying it); a due run starts."""
        for goal in await self._ledger.goals(("proposed", "active", "verifying")):
            if goal.status == "proposed":
                await self._check_plan(goal, now)
            elif goal.status == "verifying":
                if self._left_verifying(goal, now):
                    await self.verify(goal)
            elif await self._run_finished(goal):
                await self.verify(goal)
            elif goal.schedule:
                await self._maybe_run(goal, now)

    def _left_verifying(self, goal: Goal, now: datetime) -> bool:
        """Nobody is verifying the goal any more: not this process, and no other one for a lease's time."""
        return goal.id not in self._verifying and self._quiet(goal, now)

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
            self.touch(goal.id)

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
        self.touch(goal.id)

    async def verify(self, goal: Goal) -> None:
        """One model call checks the run's results against the criteria and writes the report.

        ``goal`` is active with a finished run, or verifying and left so by a process that died: it is
        verified again. Only the verification that ends the ``verifying`` status reports."""
        if goal.id in self._verifying:
            return
        self._verifying.add(goal.id)
        try:
            await self._verify(goal)
        finally:
            self._verifying.discard(goal.id)

    async def _verify(self, goal: Goal) -> None:
        if goal.status not in ("active", "verifying"):
            return
        if not await self._ledger.move_goal(goal.id, (goal.status,), "verifying"):
            return
        tasks = await self._ledger.tasks(goal.id, goal.runs)
        spent = await self._costs.spent(goal.created_at, goal.workflow)
        facts = await ledger_facts(tasks, self._approvals, goal.id)
        reading = await self._verdict(goal, facts, spent)
        met = reading is not None and reading.met
        verified = reading is not None and reading.verified
        report = reading.report if reading else f"Results:\n{facts}\nSpent: {money(spent, self._currency)}"
        if reading and reading.dropped:
            report += "\nNot proposed: " + "; ".join(reading.dropped)
        follow_up = reading.follow_up if reading and not met and not goal.schedule else ()
        status: GoalStatus = "active" if goal.schedule else ("done" if met else "proposed" if follow_up else "failed")
        if not await self._ledger.move_goal(goal.id, ("verifying",), status, report=report, verified=goal.runs):
            return  # another process verified it meanwhile, and reported
        if met:
            text = GOAL_DONE.format(goal_id=goal.id, report=report)
        elif not verified:
            text = GOAL_NOT_VERIFIED.format(goal_id=goal.id, criteria=goal.criteria or goal.text, report=report)
        else:
            text = GOAL_NOT_MET.format(goal_id=goal.id, report=report)
        await self._notifier.post(goal.session, text)
        if follow_up:
            await self._offer_follow_up(goal, list(follow_up))
        self.touch(goal.id)

    async def _verdict(self, goal: Goal, facts: str, spent: float) -> Reading | None:
        """The verifier's reading of the ledger's facts; None when no verdict can be read (not verified)."""
        if not self._llm.available():
            return None
        prompt = load_prompt("verify").format(
            goal=as_data(goal.text), criteria=as_data(goal.criteria), results=facts, cost=money(spent, self._currency)
        )
        try:
            reply = await self._llm.chat(
                [{"role": "user", "content": prompt}],
                [verdict_tool()],
                workflow=goal.workflow,
                limit=self.limit(goal),
                max_tokens=VERIFY_MAX_TOKENS,
                temperature=VERIFY_TEMPERATURE,
                tool_choice=force_tool(VERDICT_TOOL),
            )
        except (ModelUnavailable, BudgetExceeded) as exc:
            log.info("goal %s verified without a model: %s", goal.id, exc)
            return None
        raw = next((c.arguments for c in reply.tool_calls if c.name == VERDICT_TOOL), reply.content)
        reading = read_verdict(raw, self._skills)
        if reading is None:
            log.info("goal %s: the verdict could not be read; the goal is not verified", goal.id)
        return reading

    async def _offer_follow_up(self, goal: Goal, tasks: list[PlannedTask]) -> None:
        try:
            plan = Plan(criteria=goal.criteria or goal.text, tasks=tuple(tasks))
        except ValidationError as exc:
            log.info("goal %s: the follow-up plan cannot run (%s)", goal.id, exc)
            await self._ledger.move_goal(goal.id, ("proposed",), "failed")
            return
        action = PlanAction(goal_id=goal.id, goal=goal.text, plan=plan)
        proposal = await self._approvals.propose(
            action, goal.session, "goal", goal.requested_by, context={"goal_id": goal.id}
        )
        if proposal.approval is not None:
            await self._notifier.show_card(proposal.approval.id, goal.session)

    def limit(self, goal: Goal) -> Limit | None:
        """The goal's own budget, when it has one."""
        return Limit(goal.budget, goal.created_at) if goal.budget else None

    # -- reading ----------------------------------------------------------------------------------
    async def describe(self, goal: Goal) -> str:
        """``/goal <id>``: the status, then each task's attempts and trace, compactly."""
        text, _ = await self.status(goal)
        lines = [text]
        for task in await self._ledger.tasks(goal.id):
            for attempt in await self._ledger.attempts(task.id):
                tools = [str(s.get("tool")) for s in attempt.trace if s.get("step") == "tool"]
                steps = [t for t in tools if t != FINISH]
                outcome, cost = attempt.outcome or "running", money(attempt.cost, self._currency)
                line = f"  {task.key}#{attempt.attempt} {outcome} {attempt.model} {cost}"
                # Tool names are the model's vocabulary: the operator reads them as words.
                lines.append(line + (f"; did: {', '.join(s.replace('_', ' ') for s in steps)}" if steps else ""))
                if attempt.error:
                    lines.append(f"    error: {attempt.error[:200]}")
        return "\n".join(lines)

    async def overview(self) -> str:
        """``/goals``: every goal with its progress, from the ledger (no model)."""
        goals = await self._ledger.goals()
        if not goals:
            return "No goals yet. /goal <what you want done> starts one."
        lines = []
        for goal in goals[:30]:
            tasks = await self._ledger.tasks(goal.id, goal.runs) if goal.runs else []
            done = sum(t.state == "done" for t in tasks)
            waiting = len(await self.waiting_cards(goal))
            line = f"{goal.id} [{goal.status}] {goal.text[:80]}"
            if tasks:
                line += f" - {done}/{len(tasks)} tasks done"
            if waiting:
                line += f", {plural(waiting, 'card')} waiting for you"
            if goal.schedule and goal.status == "active":
                line += f", next run {next_run(goal.schedule, utcnow(), self._tz):%Y-%m-%d %H:%M} UTC"
            lines.append(line)
        return "\n".join(lines)


def plan_from_goal(goal: Goal) -> Plan | None:
    """The approved plan of a goal, if any."""
    return Plan.model_validate(goal.plan) if goal.plan else None


def card_context(goal: Goal, task: Task, skill: str) -> dict[str, Any]:
    """The provenance a task's cards carry."""
    return {
        "goal_id": goal.id,
        "goal": goal.text[:200],
        "task": f"{task.key} {task.title}",
        "task_id": task.id,
        "skill": skill,
    }
