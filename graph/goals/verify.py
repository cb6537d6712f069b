"""A goal verified: what the verifier sees, how its verdict is read, and the verification itself. It judges
the ledger's facts (each task's state and result, each card's kind, summary and final state, artifacts), not the
tasks' own word alone; a goal is met only when the verdict says so with evidence for each criterion, and a verdict
that cannot be read is "not verified", never met."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from graph.approvals.service import ApprovalService
from graph.conversation.context import as_data
from graph.conversation.schema_text import clean_schema, field_errors
from graph.errors import ModelUnavailable
from graph.goals.board import GoalBoard, Notifier
from graph.goals.plan_kind import PlanAction
from graph.goals.planner import Plan, PlannedTask, normalise_task
from graph.inbox.replies import ReplyWaits
from graph.models.llm import LLMClient, force_tool
from graph.spend.budget import BudgetExceeded, Limit
from memory.goal_evidence import EvidenceStore
from memory.ledger import CostLedger
from memory.tasks import Goal, GoalStatus, Task, TaskLedger
from prompts import load_prompt
from prompts.messages import GOAL_DONE, GOAL_NOT_MET, GOAL_NOT_VERIFIED, money

log = logging.getLogger(__name__)
VERIFY_MAX_TOKENS = 2048
VERIFY_TEMPERATURE = 0.0

VERDICT_TOOL = "submit_verdict"


class CriterionEvidence(BaseModel):
    """One criterion and what in the facts shows it."""

    criterion: str = Field(min_length=1, max_length=500, description="the criterion, in a few words")
    met: bool
    evidence: str = Field(
        default="", max_length=1000, description="the fact above that shows it (a card's state, a task's result)"
    )


class Verdict(BaseModel):
    """The verifier's answer."""

    met: bool
    report: str = Field(min_length=1, max_length=3000)
    evidence: list[CriterionEvidence] = Field(default_factory=list, max_length=20)
    follow_up: list[Any] = Field(default_factory=list, max_length=12)
    """Read one by one (a task that does not fit is dropped, never the verdict)."""


@dataclass(frozen=True)
class Reading:
    """A verdict read: whether the goal is met on evidence, the report, the follow-up tasks that can run, and
    notes on what was dropped (an unknown skill, a task that does not fit)."""

    met: bool
    report: str
    verified: bool = True
    """False when the verdict said "met" without evidence for each criterion (then it is not met either)."""
    follow_up: tuple[PlannedTask, ...] = ()
    dropped: tuple[str, ...] = ()


def verdict_tool() -> dict[str, Any]:
    """The one tool the verifier is offered."""
    schema = clean_schema(Verdict.model_json_schema())
    description = "Submit the verdict: met, a report, evidence for each criterion, follow-up tasks if any."
    return {"type": "function", "function": {"name": VERDICT_TOOL, "description": description, "parameters": schema}}


async def ledger_facts(tasks: list[Task], approvals: ApprovalService, goal_id: str, replies: str = "") -> str:
    """What happened, from the ledger: each task's state and result, each card of the goal's tasks with its final
    state (sent, failed, unknown, rejected, expired, or still waiting), the artifacts made, and ``replies``: the
    answers received to the goal's emails, quoted, each naming its sender and the email it answers (data: I8)."""
    lines = ["Tasks:"]
    artifacts: list[str] = []
    for task in tasks:
        result = task.result or {}
        said = result.get("summary") or task.error or "(no result)"
        lines.append(f"- {task.key} {task.title} [{task.state}]: {str(said)[:400]}")
        artifacts += [str(a) for a in result.get("artifacts", [])]
    lines.append("Cards (outward actions the tasks proposed):")
    cards = [r for r in await approvals.store.for_goal(goal_id) if r.origin == "task"]
    for row in cards:
        kind = approvals.kind(row.kind)
        outbox = await approvals.store.outbox(row.id) if row.state == "approved" else None
        state = outbox.state if outbox else ("approved, not carried out" if row.state == "approved" else row.state)
        lines.append(f"- {row.kind}: {kind.summary(kind.parse(row.action))[:300]} -> {state}")
    if not cards:
        lines.append("- none")
    lines.append("Artifacts: " + (", ".join(artifacts[:30]) or "none"))
    if replies:
        lines += ["Replies received to these emails (quoted, from outside):", replies]
    return as_data("\n".join(lines))


def read_verdict(raw: str, skills: Collection[str]) -> Reading | None:
    """The verdict from the verifier's arguments (None when it cannot be read). Met needs ``met`` and, for each
    criterion it lists, ``met`` with evidence; an invalid follow-up task is dropped with a note, never the verdict."""
    try:
        data = json.loads(_unfenced(raw) or "{}")
        verdict = Verdict.model_validate(data)
    except (json.JSONDecodeError, ValidationError):
        return None
    shown = bool(verdict.evidence) and all(e.met and e.evidence.strip() for e in verdict.evidence)
    follow_up: list[PlannedTask] = []
    dropped: list[str] = []
    for item in verdict.follow_up:
        task, problem = _follow_up(item, skills)
        if task is None:
            dropped.append(problem)
        elif task.key not in {t.key for t in follow_up}:
            follow_up.append(task)
    # A follow-up waits only on other follow-ups: the finished run's tasks are not in its plan.
    keys = {t.key for t in follow_up}
    kept = tuple(t.model_copy(update={"depends_on": tuple(d for d in t.depends_on if d in keys)}) for t in follow_up)
    verified = shown or not verdict.met
    return Reading(verdict.met and shown, verdict.report, verified, kept, tuple(dropped))


def _follow_up(item: Any, skills: Collection[str]) -> tuple[PlannedTask | None, str]:
    try:
        task = PlannedTask.model_validate(normalise_task(item))
    except ValidationError as exc:
        return None, f"a follow-up task that does not fit ({field_errors(exc)})"
    if task.skill not in skills:
        return None, f'follow-up "{task.title[:60]}" needs a skill that is not available ({task.skill[:30]})'
    return task, ""


def _unfenced(raw: str) -> str:
    text = (raw or "").strip()
    if "```" in text:
        text = text.split("```", 2)[1].removeprefix("json").strip()
    return text


class GoalVerifier:
    """Verifies a goal's finished run: one model call reads the ledger's facts (and the evidence and replies seen
    since) and writes the report; an unmet goal may get a follow-up plan, on its own card."""

    def __init__(
        self,
        ledger: TaskLedger,
        approvals: ApprovalService,
        llm: LLMClient,
        costs: CostLedger,
        board: GoalBoard,
        notifier: Notifier,
        skills: tuple[str, ...],
        currency: str,
        limit: Callable[[Goal], Limit | None],
        evidence: EvidenceStore | None = None,
        replies: ReplyWaits | None = None,
    ) -> None:
        """``skills``: what a follow-up task may use; ``evidence``: facts seen after the tasks ran (an invoice
        paid), read with the ledger's; ``replies``: answers to the goal's emails, shown as quoted data."""
        self._ledger = ledger
        self._approvals = approvals
        self._llm = llm
        self._costs = costs
        self._board = board
        self._notifier = notifier
        self._skills = skills
        self._currency = currency
        self._evidence = evidence
        self._replies = replies
        self._limit = limit
        self._verifying: set[str] = set()  # goals this process is verifying now

    def busy(self, goal_id: str) -> bool:
        """This process is verifying the goal now."""
        return goal_id in self._verifying

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
        replies = await self._replies.for_goal(goal.id) if self._replies else ""
        facts = await ledger_facts(tasks, self._approvals, goal.id, replies) + await self._evidence_facts(goal.id)
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
        self._board.touch(goal.id)

    async def _evidence_facts(self, goal_id: str) -> str:
        found = await self._evidence.for_goal(goal_id) if self._evidence is not None else []
        return "".join(f"\nEvidence seen since ({e.task_id.rsplit('.', 1)[-1]}): {as_data(e.fact)}" for e in found)

    async def evidence_arrived(self, goal_id: str, seen_at: datetime) -> bool:
        """New evidence (seen at ``seen_at``) for a goal. A goal whose last run was judged and not met since
        (failed, or a follow-up offered) is verified again with it, and a follow-up plan still waiting is
        withdrawn; an active goal's verification reads it when its run ends. True when it verified again.
        Safe to call twice: a goal judged after the evidence arrived is left as it is."""
        goal = await self._ledger.goal(goal_id)
        if goal is None:
            return False
        self._board.touch(goal_id)
        judged = goal.runs > 0 and goal.verified >= goal.runs and goal.updated_at <= seen_at
        if goal.status not in ("failed", "proposed") or not judged or goal.schedule:
            return False
        if not await self._ledger.move_goal(goal_id, (goal.status,), "active", verified=goal.runs - 1):
            return False
        for row in await self._approvals.store.for_goal(goal_id):
            if row.kind == "goal.plan" and row.state == "pending":
                await self._approvals.withdraw(row, "coo")
        fresh = await self._ledger.goal(goal_id)
        assert fresh is not None
        await self.verify(fresh)
        return True

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
                limit=self._limit(goal),
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
