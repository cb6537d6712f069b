"""A goal's board: the one status message each goal keeps in its chat (marks, progress, what waits on the
operator, spend, Approve all / Cancel goal), edited at most once per interval, and the ``/goal`` and ``/goals``
texts. How the goal layer talks to the operator (:class:`Notifier`) is declared here too."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from graph.approvals.service import ApprovalService
from graph.buttons import Prefix, encode
from graph.goals.plan_kind import next_run
from graph.goals.skill_graph import FINISH
from graph.inbox.replies import ReplyWaits
from graph.settings import TaskSettings
from memory.approvals import ApprovalRow
from memory.db import utcnow
from memory.ledger import CostLedger
from memory.tasks import Goal, Task, TaskLedger
from prompts.messages import TASK_WAITING_REPLY, money, plural

ButtonSpec = tuple[tuple[str, str], ...]
MARK = {
    "done": "[done]",
    "running": "[running]",
    "waiting_approval": "[waiting for you]",
    "waiting_reply": "[waiting for a reply]",
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


class GoalBoard:
    """Each goal's status message, and what ``/goal`` and ``/goals`` read."""

    def __init__(
        self,
        ledger: TaskLedger,
        approvals: ApprovalService,
        costs: CostLedger,
        notifier: Notifier,
        settings: TaskSettings,
        timezone: str,
        currency: str,
        replies: ReplyWaits | None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._ledger = ledger
        self._clock = clock
        self._approvals = approvals
        self._costs = costs
        self._notifier = notifier
        self._settings = settings
        self._tz = timezone
        self._currency = currency
        self._replies = replies
        self._dirty: set[str] = set()
        self._posted_at: dict[str, datetime] = {}

    def touch(self, goal_id: str) -> None:
        """Something changed: the goal's status message is due for an edit (rate-limited)."""
        self._dirty.add(goal_id)

    async def flush_progress(self, now: datetime, force: bool = False) -> int:
        """Edit the status message of each changed goal, at most once per ``progress_interval_s``."""
        edited = 0
        for goal_id in sorted(self._dirty):
            last = self._posted_at.get(goal_id)
            if not force and last is not None and (now - last).total_seconds() < self._settings.progress_interval_s:
                continue
            self._dirty.discard(goal_id)
            goal = await self._ledger.goal(goal_id)
            if goal is None or goal.status in ("planning", "proposed"):
                continue
            text, buttons = await self.status(goal)
            replace = (goal.status_message or {}).get("message_id")
            message_id = await self._notifier.post(goal.session, text, buttons, replace)
            self._posted_at[goal_id] = now
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
            lines += await self._awaited_lines(tasks)
        if waiting:
            lines.append(f"Waiting on you: {plural(len(waiting), 'card')}")
            lines += [f"- {self._summary(row)} (approval {row.id})" for row in waiting]
        if goal.schedule and goal.status == "active":
            lines.append(f"Next run: {next_run(goal.schedule, self._clock(), self._tz):%Y-%m-%d %H:%M} UTC")
        spent = await self._costs.spent(goal.created_at, goal.workflow)
        lines.append(f"Spent: {money(spent, self._currency)}")
        if goal.report and goal.status in ("done", "failed"):
            lines.append(goal.report)
        buttons: list[tuple[str, str]] = []
        if waiting:
            buttons.append((f"Approve all {len(waiting)}", encode(Prefix.GOAL, "all", goal.id)))
        if goal.status not in ("done", "failed", "cancelled"):
            buttons.append(("Cancel goal", encode(Prefix.GOAL, "cancel", goal.id)))
        return "\n".join(lines), tuple(buttons)

    async def _awaited_lines(self, tasks: list[Task]) -> list[str]:
        lines = []
        for task in tasks:
            if task.state == "waiting_reply" and self._replies is not None:
                who = await self._replies.awaited(task)
                shown = TASK_WAITING_REPLY.format(task=task.title, who=", ".join(who) or "?", due=task.next_try_at)
                lines.append(shown)
        return lines

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
                line += f", next run {next_run(goal.schedule, self._clock(), self._tz):%Y-%m-%d %H:%M} UTC"
            lines.append(line)
        return "\n".join(lines)
