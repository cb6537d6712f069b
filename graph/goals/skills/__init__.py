"""Skills: what a task can do. A skill is a prompt file in ``prompts/`` plus one declaration: the tools it
may use, its model tier and its output schema. It runs as a small LangGraph subgraph (graph/goals/skill_graph.py)
with bounded tool rounds; tasks never see each other's transcripts, only their results."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

Tier = Literal["main", "routine"]
Status = Literal["done", "needs_operator", "failed"]


class TaskResult(BaseModel):
    """What a task hands to the tasks that depend on it: a short summary and artifact references."""

    status: Status = Field(
        default="done", description="done; needs_operator (summary is your question); failed (summary says why)"
    )
    summary: str = Field(min_length=1, max_length=2000, description="what was done and found, in a few sentences")
    artifacts: list[str] = Field(default_factory=list, description="references such as draft:<id> or contact:<id>")


@dataclass(frozen=True)
class Skill:
    """One skill's declaration."""

    name: str
    description: str
    prompt: str
    tools: tuple[str, ...]
    tier: Tier
    output: type[TaskResult] = TaskResult
    max_tokens: int | None = None
    """The output limit of its model calls (None: the configured one); a skill that writes long texts needs more."""
    mcp: tuple[str, ...] = ()
    """The operator's trusted MCP reads it may use, as ``server.tool`` patterns (``*`` any, ``calendar.*``)."""

    def may_read(self, key: str) -> bool:
        """Whether this skill may use the trusted outside read named ``key`` (``server.tool``)."""
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in self.mcp)


def all_skills() -> dict[str, Skill]:
    """Every skill by name."""
    from graph.goals.skills import billing, draft, outreach, publish, records, research

    return {module.SKILL.name: module.SKILL for module in (research, draft, outreach, publish, billing, records)}


def usable_skills(skills: dict[str, Skill], unavailable_tools: set[str]) -> dict[str, Skill]:
    """The skills a plan may use now: those whose tools are all available (a skill that proposes
    invoices is left out while invoicing is not configured)."""
    return {name: skill for name, skill in skills.items() if not unavailable_tools & set(skill.tools)}
