"""Skills: what a task can do. A skill is a prompt file in ``prompts/`` plus one module in this folder that
declares ``SKILL = Skill(...)``: the tools it may use, its model tier and its output schema. Adding one is
adding those two files (and its test): skills are found here, not listed. It runs as a small LangGraph
subgraph (graph/goals/skill_graph.py) with bounded tool rounds; tasks never see each other's transcripts, only
their results."""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import pkgutil
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Literal

from pydantic import BaseModel, Field

from memory.errors import InternalError
from prompts import load_prompt

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
    awaits_replies: bool = False
    """Its emails ask for answers: once they are sent, its task waits for a reply (when an inbox is read)."""

    def may_read(self, key: str) -> bool:
        """Whether this skill may use the trusted outside read named ``key`` (``server.tool``)."""
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in self.mcp)


class SkillError(InternalError):
    """A skill that cannot work as declared (two of one name, a tool that does not exist): the start stops."""


@cache
def all_skills() -> dict[str, Skill]:
    """Every skill in this folder by name, in module-name order."""
    package = sys.modules[__name__]
    found: dict[str, Skill] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        skill = getattr(importlib.import_module(f"{__name__}.{info.name}"), "SKILL", None)
        if not isinstance(skill, Skill):
            continue
        if skill.name in found:
            raise SkillError(f"two skills are named {skill.name!r} (one in {__name__}.{info.name})")
        found[skill.name] = skill
    return found


def check_skills(skills: Mapping[str, Skill], tools: Collection[str]) -> None:
    """SkillError naming the first skill that declares a tool not in ``tools`` (every tool and action tool
    there is, configured or not) or a prompt that is not there: a misspelt tool would otherwise be silently
    left out of its skill, and a missing prompt found only when a task runs."""
    for skill in skills.values():
        try:
            load_prompt(skill.prompt)
        except (FileNotFoundError, ValueError):
            raise SkillError(f"skill {skill.name!r} has no prompt file prompts/{skill.prompt}.txt") from None
        missing = [name for name in skill.tools if name not in tools]
        if missing:
            close = difflib.get_close_matches(missing[0], tools, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SkillError(f"skill {skill.name!r} names a tool that does not exist: {missing[0]!r}{hint}")


def usable_skills(skills: dict[str, Skill], unavailable_tools: set[str]) -> dict[str, Skill]:
    """The skills a plan may use now: those whose tools are all available (a skill that proposes
    invoices is left out while invoicing is not configured)."""
    return {name: skill for name, skill in skills.items() if not unavailable_tools & set(skill.tools)}
