"""``goal.plan``: a goal's plan as an approval card (Approve / Edit / Reject), through the same machinery as
outward actions. Nothing of a goal runs before its plan is approved; Edit replans with the operator's words;
Reject (or expiry) ends the goal. Executing the approved plan creates the first run's tasks, or, for a
recurring goal, arms its schedule."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from connectors.base import (
    Action,
    ActionError,
    ActionKind,
    Context,
    Executed,
    PermanentError,
    PolicyHints,
    Preview,
    Progress,
    ToolSpec,
)
from graph.errors import ModelUnavailable
from graph.goals.planner import Plan, PlanError, Planner
from graph.spend.budget import BudgetExceeded
from memory.tasks import Goal, TaskLedger
from prompts.messages import GOAL_NEEDS_MODEL, money, plural


class PlanAction(Action):
    """A goal and the plan proposed for it."""

    kind: Literal["goal.plan"] = "goal.plan"
    goal_id: str
    goal: str
    plan: Plan


class StartGoalArgs(BaseModel):
    """Arguments of the start_goal tool."""

    goal: str = Field(
        min_length=3,
        max_length=2000,
        description="the goal, self-contained, in the operator's words: what, for whom, by when (the planner sees "
        "nothing else of this chat)",
    )


class PlanKind(ActionKind[PlanAction]):
    """``goal.plan``: approving it starts the goal."""

    name = "goal.plan"
    title = "Start this plan?"
    args = PlanAction
    policy: ClassVar[PolicyHints] = PolicyHints(needs_approval=True)
    edit_help = "Tell me in your next message what to change in the plan, in plain words; I will replan it."
    resumable = True  # activation is idempotent: a run's tasks are created once
    done_verb = "Started"
    working = "Starting the goal…"
    nothing_done = "Nothing was started."
    activity = "starting goals"

    def __init__(self, ledger: TaskLedger, planner: Planner, clock: Any = None) -> None:
        self._ledger = ledger
        self._planner = planner
        self.tool = ToolSpec(
            "start_goal",
            "When the operator states a goal (something to get done over several steps), start it: a plan is "
            "made and shown to the operator on a card to approve before any work begins.",
            StartGoalArgs,
        )

    @property
    def skills(self) -> tuple[str, ...]:
        """The skills a plan (or a verifier's follow-up) may use now."""
        return self._planner.skills

    def preview(self, action: PlanAction) -> Preview:
        plan = action.plan
        fields = [("Goal", f"{action.goal} ({action.goal_id})"), ("Done when", plan.criteria)]
        if plan.due:
            fields.append(("Due", plan.due.isoformat()))
        if plan.schedule:
            fields.append(("Runs", f"on schedule {plan.schedule} (each run's outward steps are cards)"))
        if plan.budget:
            spend = money(plan.budget, self._planner.currency)
            fields.append(("Budget", f"{spend} of model spend; work stops there"))
        lines = []
        for number, task in enumerate(plan.tasks, 1):
            after = f" (after {', '.join(task.depends_on)})" if task.depends_on else ""
            lines.append(f"{number}. [{task.skill}] {task.title}{after}")
            if task.instructions.strip() and task.instructions.strip() != task.title.strip():
                lines.append(f"   {_shortened(task.instructions)}")
        return Preview(self.title, tuple(fields), "\n".join(lines))

    def summary(self, action: PlanAction) -> str:
        return f'plan for goal {action.goal_id} "{action.goal[:60]}" ({plural(len(action.plan.tasks), "task")})'

    async def from_tool(self, args: BaseModel, ctx: Context) -> PlanAction:
        assert isinstance(args, StartGoalArgs)
        return await self.from_command(args.goal, ctx)

    async def from_command(self, text: str, ctx: Context) -> PlanAction:
        """Record the goal, then plan it (a model call). Without a model the goal stays recorded, unplanned."""
        goal = await self._ledger.create_goal(text.strip(), ctx.session, ctx.requested_by)
        return await self.plan_for(goal)

    async def plan_for(self, goal: Goal, feedback: str = "", previous: Plan | None = None) -> PlanAction:
        """A plan card's action for ``goal`` (ActionError when no plan can be made now)."""
        if not self._planner.available:
            raise ActionError(GOAL_NEEDS_MODEL.format(goal_id=goal.id))
        try:
            plan = await self._planner.plan(goal.text, workflow=goal.workflow, feedback=feedback, previous=previous)
        except ModelUnavailable as exc:
            raise ActionError(GOAL_NEEDS_MODEL.format(goal_id=goal.id) + f" ({exc})") from None
        except BudgetExceeded as exc:
            raise ActionError(f"Goal {goal.id} is recorded, but planning would cross a budget: {exc}") from None
        except PlanError as exc:
            await self._ledger.update_goal(goal.id, status="failed", report=f"no valid plan: {exc}")
            raise ActionError(f"I could not make a plan that can run for goal {goal.id}: {exc}") from None
        await self._ledger.update_goal(goal.id, status="proposed", criteria=plan.criteria, due=_iso(plan.due))
        return self.build({"goal_id": goal.id, "goal": goal.text, "plan": plan.model_dump(mode="json")})

    async def edit(self, action: PlanAction, text: str, ctx: Context) -> PlanAction:
        """Replan with the operator's words."""
        goal = await self._ledger.goal(action.goal_id)
        if goal is None:
            raise ActionError(f"Goal {action.goal_id} no longer exists.")
        return await self.plan_for(goal, feedback=text, previous=action.plan)

    async def execute(self, action: PlanAction, idempotency_key: str, progress: Progress | None = None) -> Executed:
        """Start the goal: the next run's tasks, or its schedule for a recurring goal (idempotent per key)."""
        plan = action.plan
        goal = await self._ledger.goal(action.goal_id)
        if goal is None:
            raise PermanentError(f"goal {action.goal_id} no longer exists")
        if goal.status == "cancelled":
            raise PermanentError(f"goal {action.goal_id} was cancelled")
        await self._ledger.update_goal(
            action.goal_id,
            plan=plan.model_dump(mode="json"),
            schedule=plan.schedule,
            criteria=plan.criteria,
            budget=plan.budget,
        )
        if plan.schedule:
            await self._ledger.update_goal(action.goal_id, status="active", plan_approval=idempotency_key)
            return Executed(action.goal_id, f"Goal {action.goal_id} runs on schedule {plan.schedule}.")
        if goal.plan_approval != idempotency_key:  # not activated by this approval yet (or interrupted before)
            await self._ledger.add_run(action.goal_id, task_specs(plan), goal.runs + 1, activation=idempotency_key)
        await self._ledger.update_goal(action.goal_id, status="active")
        return Executed(action.goal_id, f"Goal {action.goal_id}: {plural(len(plan.tasks), 'task')} started.")

    def outcome_line(self, when: str, executed: Executed) -> str:
        return f"Started {when}. {executed.detail}"


def task_specs(plan: Plan) -> list[dict[str, Any]]:
    """The ledger's form of a plan's tasks."""
    return [task.model_dump() for task in plan.tasks]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def next_run(schedule: str, after: datetime, timezone: str) -> datetime:
    """The first scheduled time after ``after`` (DST-safe, in the operator's zone), in UTC."""
    from zoneinfo import ZoneInfo

    from croniter import croniter

    local = after.astimezone(ZoneInfo(timezone))
    found: datetime = croniter(schedule, local).get_next(datetime)
    return found.astimezone(after.tzinfo or ZoneInfo("UTC"))


def previous_run(schedule: str, at: datetime, timezone: str) -> datetime:
    """The latest scheduled time at or before ``at``, in UTC."""
    from zoneinfo import ZoneInfo

    from croniter import croniter

    local = (at + timedelta(seconds=1)).astimezone(ZoneInfo(timezone))
    found: datetime = croniter(schedule, local).get_prev(datetime)
    return found.astimezone(at.tzinfo or ZoneInfo("UTC"))


def _shortened(text: str, limit: int = 160) -> str:
    """Instructions in one line of at most ``limit`` characters (the card shows what will drive the task)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
