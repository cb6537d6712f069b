"""The coordinator's state. JSON-plain on purpose: it is checkpointed after every step."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from graph.approvals import ApprovalService
from graph.llm import LLMClient
from graph.tools import ToolBox
from memory.api import Memory
from memory.db import Database
from memory.profile import ProfileStore
from memory.records import Records


class CooState(TypedDict, total=False):
    """One conversation (thread = session key)."""

    messages: Annotated[list[dict[str, Any]], operator.add]
    context: list[dict[str, Any]]
    tool_rounds: int
    reply: str
    reply_log: str | None
    offline: bool
    awaiting: dict[str, str] | None
    cards: list[str]
    summary: str
    summarized: int
    turn_key: str | None


@dataclass(frozen=True)
class GraphContext:
    """Per-run dependencies, passed as LangGraph runtime context (never checkpointed)."""

    db: Database
    llm: LLMClient
    tools: ToolBox
    session: str
    timezone: str
    max_tool_rounds: int
    requested_by: str = ""
    approvals: ApprovalService | None = None
    currency: str = "USD"
    records: Records | None = None
    profile: ProfileStore | None = None
    memory: Memory | None = None
    scope: str = "default"
    context_budget: int = 6000
