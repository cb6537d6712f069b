"""What a skill's attempt is given and how it ends: the system message every skill shares (the operator's
context), action tool schemas with a required reason, the outcome of an attempt that proposed nothing, and the
provenance its cards carry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from graph.conversation.context import as_data
from graph.conversation.schema_text import clean_schema
from graph.conversation.tools import ToolContext
from graph.pipeline.service import pipeline_summary
from memory.db import utcnow
from memory.tasks import Goal, Task
from prompts import load_prompt
from prompts.messages import TASK_NEEDS_OPERATOR


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended."""

    kind: str  # "done", "waiting", "retry", "blocked"
    result: dict[str, Any] | None = None
    waiting_on: tuple[str, ...] = ()
    error: str = ""
    model: str = ""
    cost: float = 0.0
    trace: tuple[dict[str, Any], ...] = ()


async def skill_system(tool_ctx: ToolContext, currency: str, sender: str) -> str:
    """The system message every skill shares: the role and the data rule, now (weekday and zone), the currency, the
    operator's name and sender address, the profile's facts (as data), the standing instructions, and the sales
    pipeline's summary (as data) when contacts have stages."""
    profile = await tool_ctx.profile.get() if tool_ctx.profile is not None else None
    now = utcnow().astimezone(ZoneInfo(tool_ctx.timezone))
    instructions = profile.instructions if profile else ""
    pipeline = await pipeline_summary(tool_ctx.db, tool_ctx.records, tool_ctx.timezone) if tool_ctx.records else ""
    if pipeline:
        pipeline = "\n" + load_prompt("pipeline_context").format(pipeline=as_data(pipeline)).strip()
    return (
        load_prompt("skill_system")
        .format(
            now=now.strftime("%Y-%m-%d %H:%M"),
            weekday=now.strftime("%A"),
            timezone=tool_ctx.timezone,
            currency=currency,
            operator=(profile.values.get("name") if profile else None) or "(name not set: sign with the business name)",
            sender=sender or "(email is not configured)",
            facts=as_data(profile.render_facts()) if profile else "",
            instructions=load_prompt("operator_instructions").format(instructions=instructions) if instructions else "",
        )
        .strip()
    ) + pipeline


def with_reason(schema: dict[str, Any]) -> dict[str, Any]:
    """An action tool's schema for skills: no titles, and a required ``reason`` (the card shows it as "Why:")."""
    params = clean_schema(schema["function"]["parameters"])
    params["properties"] = {
        **params.get("properties", {}),
        "reason": {"type": "string", "description": "one line for the operator's card: why this action, why now"},
    }
    params["required"] = [*params.get("required", []), "reason"]
    return {"type": "function", "function": {**schema["function"], "parameters": params}}


def ended(result: dict[str, Any] | None, failure: str, common: dict[str, Any]) -> Outcome:
    """An attempt that proposed nothing: done only when its skill called finish_task with status done; a task
    that needs the operator is blocked with its question; anything else is a failed attempt (retried)."""
    if result is None:
        return Outcome("retry", error=failure or "the task ended without a result", **common)
    status, summary = result.get("status", "done"), str(result.get("summary", ""))
    if status == "needs_operator":
        return Outcome("blocked", error=TASK_NEEDS_OPERATOR.format(question=summary[:500]), **common)
    if status == "failed":
        return Outcome("retry", error=f"the task could not be done: {summary[:300]}", **common)
    return Outcome("done", result=result, **common)


def card_context(goal: Goal, task: Task, skill: str) -> dict[str, Any]:
    """The provenance a task's cards carry."""
    return {
        "goal_id": goal.id,
        "goal": goal.text[:200],
        "task": f"{task.key} {task.title}",
        "task_id": task.id,
        "skill": skill,
    }
