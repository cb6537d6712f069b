"""What the verifier sees and how its verdict is read. It judges the ledger's facts (each task's state and result,
each card's kind, summary and final state, artifacts), not the tasks' own word alone; a goal is met only when the
verdict says so with evidence for each criterion, and a verdict that cannot be read is "not verified", never met."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from graph.approvals.service import ApprovalService
from graph.conversation.context import as_data
from graph.conversation.schema_text import clean_schema, field_errors
from graph.goals.planner import PlannedTask, normalise_task
from memory.tasks import Task

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


async def ledger_facts(tasks: list[Task], approvals: ApprovalService, goal_id: str) -> str:
    """What happened, from the ledger: each task's state and result, each card of the goal's tasks with its final
    state (sent, failed, unknown, rejected, expired, or still waiting), and the artifacts made."""
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
