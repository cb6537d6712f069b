"""The planner: one model call turns a goal into a structured plan, validated before anyone sees it.

A plan has up to 12 tasks, each with a skill, instructions, ``depends_on`` and the expected output.
Cycles, unknown skills and dangling dependencies are refused; the planner gets the reason and one more
try, then the operator is told.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from graph.conversation.context import as_data
from graph.conversation.schema_text import clean_schema, field_errors
from graph.errors import ModelUnavailable
from graph.models.llm import LLMClient, force_tool
from graph.spend.budget import BudgetExceeded, Limit
from prompts import load_prompt

log = logging.getLogger(__name__)

MAX_TASKS = 12
RETRY_PLAN = "That plan cannot run: {error}. Submit a corrected plan with submit_plan."
"""To the model (not the operator): why its plan was refused, and which tool takes the next one."""
PLAN_MAX_TOKENS = 4096  # a 12-task plan with instructions does not fit the chat turn's limit
PLAN_TEMPERATURE = 0.2
_EMPTY = frozenset({"", "none", "null", "n/a", "-"})
_TASK_FIELDS = ("key", "title", "skill", "instructions", "depends_on", "expected")
_PLAN_FIELDS = ("criteria", "tasks", "schedule", "due", "budget")


class PlanError(ValueError):
    """A plan that cannot run; the message says why (shown to the planner, then to the operator)."""


class PlannedTask(BaseModel):
    """One step of a plan."""

    model_config = {"frozen": True, "extra": "forbid"}

    key: str = Field(pattern=r"^[a-z0-9_-]{1,20}$", description="short id, e.g. t1")
    title: str = Field(min_length=1, max_length=200)
    skill: str
    instructions: str = Field(min_length=1, max_length=4000)
    depends_on: tuple[str, ...] = ()
    expected: str = Field(default="", max_length=500)


class Plan(BaseModel):
    """A goal's plan: success criteria, tasks, optionally a schedule (cron, operator's time zone) and a due date."""

    model_config = {"frozen": True, "extra": "forbid"}

    criteria: str = Field(min_length=1, max_length=1000)
    tasks: tuple[PlannedTask, ...] = Field(min_length=1, max_length=MAX_TASKS)
    schedule: str | None = None
    due: date | None = None
    budget: float | None = Field(
        default=None, gt=0, le=1_000_000, description="the most the goal may spend on the model, if the operator said"
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not croniter.is_valid(value) or len(value.split()) != 5:
            raise ValueError(f"schedule {value!r} is not a 5-field cron expression")
        return value

    @model_validator(mode="after")
    def _graph(self) -> Plan:
        keys = [t.key for t in self.tasks]
        if len(set(keys)) != len(keys):
            raise ValueError("two tasks share a key")
        for task in self.tasks:
            for dep in task.depends_on:
                if dep not in keys:
                    raise ValueError(f"task {task.key} depends on {dep!r}, which is not in the plan")
                if dep == task.key:
                    raise ValueError(f"task {task.key} depends on itself")
        if (cycle := find_cycle({t.key: t.depends_on for t in self.tasks})) is not None:
            raise ValueError("the plan has a cycle: " + " -> ".join(cycle))
        return self


def find_cycle(edges: dict[str, Collection[str]]) -> list[str] | None:
    """A dependency cycle, as the keys along it, or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        state[node] = 2
        path.pop()
        return None

    for start in edges:
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _EMPTY)


def _key(value: Any) -> Any:
    if not isinstance(value, str | int):
        return value
    return re.sub(r"[^a-z0-9_-]+", "-", str(value).strip().lower()).strip("-")[:20]


def _folded(item: dict[Any, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Keys case-folded, fields the schema does not know dropped, empty values ("", "none", null) left out."""
    folded = {str(k).strip().lower(): v for k, v in item.items()}
    return {k: folded[k] for k in fields if k in folded and not _blank(folded[k])}


def normalise_task(item: Any) -> Any:
    """A planned task as small models write it, made regular: ``"T1"`` -> ``"t1"``, ``depends_on`` null, ``""``
    or a single key -> a list, unknown fields ignored."""
    if not isinstance(item, dict):
        return item
    task = _folded(item, _TASK_FIELDS)
    if "key" in task:
        task["key"] = _key(task["key"])
    if isinstance(task.get("skill"), str):
        task["skill"] = task["skill"].strip().lower()
    deps = task.get("depends_on", [])
    if isinstance(deps, str | int):
        deps = [d for d in re.split(r"[,\s]+", str(deps)) if d]
    if isinstance(deps, list):
        task["depends_on"] = [_key(d) for d in deps if not _blank(d)]
    return task


def normalise_plan(data: Any) -> Any:
    """A plan as small models write it, made regular before validation (see :func:`normalise_task`)."""
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), dict):
        data = next(iter(data.values()))  # {"plan": {...}}
    if not isinstance(data, dict):
        return data
    plan = _folded(data, _PLAN_FIELDS)
    if isinstance(plan.get("tasks"), list):
        plan["tasks"] = [normalise_task(t) for t in plan["tasks"]]
    return plan


def validate_plan(data: Any, skills: Collection[str]) -> Plan:
    """A plan from the model's JSON; PlanError with the reasons (``field: problem``) when it cannot run."""
    try:
        plan = Plan.model_validate(normalise_plan(data))
    except ValidationError as exc:
        raise PlanError(field_errors(exc)) from None
    unknown = sorted({t.skill for t in plan.tasks} - set(skills))
    if unknown:
        raise PlanError(f"unknown skill(s) {', '.join(unknown)}; the skills are {', '.join(sorted(skills))}")
    return plan


def plan_tool(skills: dict[str, str]) -> dict[str, Any]:
    """The one tool the planner offers: submit_plan with the plan's JSON schema."""
    schema = clean_schema(Plan.model_json_schema())
    schema["properties"]["tasks"]["items"]["properties"]["skill"]["enum"] = sorted(skills)
    listed = "; ".join(f"{name}: {what}" for name, what in skills.items())
    description = f"Submit the plan. Skills: {listed}."
    return {"type": "function", "function": {"name": "submit_plan", "description": description, "parameters": schema}}


class Planner:
    """Asks the model for a plan, validates it, and asks once more with the reason when it is invalid."""

    def __init__(self, llm: LLMClient, skills: dict[str, str], timezone: str, currency: str = "USD") -> None:
        self._llm = llm
        self._skills = skills
        self._tz = timezone
        self.currency = currency
        """The currency of budgets (a plan's budget is in it)."""

    @property
    def skills(self) -> tuple[str, ...]:
        """The names of the skills a plan may use."""
        return tuple(self._skills)

    @property
    def available(self) -> bool:
        """True when a model can be asked now."""
        return self._llm.available()

    async def plan(
        self, goal: str, *, workflow: str, feedback: str = "", previous: Plan | None = None, limit: Limit | None = None
    ) -> Plan:
        """A valid plan for ``goal``. Raises PlanError (twice invalid), ModelUnavailable or BudgetExceeded."""
        prompt = load_prompt("planner").format(
            goal=as_data(goal),
            skills="\n".join(f"- {name}: {what}" for name, what in self._skills.items()),
            previous=previous.model_dump_json(indent=1) if previous else "(none)",
            feedback=as_data(feedback) or "(none)",
            now=datetime.now(ZoneInfo(self._tz)).isoformat(timespec="minutes"),
            timezone=self._tz,
            currency=self.currency,
        )
        messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
        error = ""
        for _ in range(2):
            if error:
                messages.append({"role": "user", "content": RETRY_PLAN.format(error=error)})
            reply = await self._llm.chat(
                messages,
                [plan_tool(self._skills)],
                workflow=workflow,
                limit=limit,
                max_tokens=PLAN_MAX_TOKENS,
                temperature=PLAN_TEMPERATURE,
                tool_choice=force_tool("submit_plan"),
            )
            if reply.finish_reason == "length":
                error = f"the plan was cut off at the output limit ({PLAN_MAX_TOKENS} tokens); make it shorter"
                continue
            try:
                return validate_plan(_plan_json(reply.content, reply.tool_calls), self._skills)
            except PlanError as exc:
                error = str(exc)
                log.info("planner: invalid plan (%s)", error)
                messages.append(reply.as_message())
                for call in reply.tool_calls:
                    messages.append({"role": "tool", "tool_call_id": call.id, "content": f"error: {error}"})
        raise PlanError(error)


def _plan_json(content: str, calls: Any) -> Any:
    """The plan from a submit_plan call, or from JSON in the text (endpoints without tool calls)."""
    for call in calls:
        if call.name == "submit_plan":
            try:
                return json.loads(call.arguments or "{}")
            except json.JSONDecodeError as exc:
                raise PlanError(f"the plan is not valid JSON ({exc.msg})") from None
    start = content.find("{")
    try:
        return json.JSONDecoder().raw_decode(content, start)[0] if start >= 0 else json.loads(content)
    except json.JSONDecodeError:
        raise PlanError("the model answered without a plan") from None


__all__ = ["BudgetExceeded", "ModelUnavailable", "Plan", "PlanError", "PlannedTask", "Planner", "validate_plan"]
