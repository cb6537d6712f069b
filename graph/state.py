"""The coordinator's state. JSON-plain on purpose: it is checkpointed after every step."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from graph.approvals import ApprovalService
from graph.llm import LLMClient
from graph.tools import ToolBox
from memory.db import Database


class CooState(TypedDict, total=False):
    """One conversation (thread = session key)."""

    messages: Annotated[list[dict[str, Any]], operator.add]
    context: list[dict[str, Any]]
    tool_rounds: int
    reply: str
    offline: bool
    awaiting: dict[str, str] | None
    cards: list[str]


@dataclass(frozen=True)
class GraphContext:
    """Per-run dependencies, passed as LangGraph runtime context (never checkpointed)."""

    db: Database
    llm: LLMClient
    tools: ToolBox
    session: str
    timezone: str
    recent_turns: int
    max_tool_rounds: int
    requested_by: str = ""
    approvals: ApprovalService | None = None
    email_from: str | None = None
