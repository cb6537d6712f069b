"""The coordinator's state. JSON-plain on purpose: it is checkpointed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from graph.approvals.service import ApprovalService
from graph.conversation.tools import ToolBox
from graph.models.llm import LLMClient
from memory.db import Database
from memory.profile import ProfileStore
from memory.records import Records

if TYPE_CHECKING:
    from graph.contexts import Contexts
    from graph.conversation.recall import ContactNames, SessionRecall
    from memory.semantic.api import Memory

DROP_ROLE = "__drop__"
"""A pseudo message at the head of an update: drop that many of the oldest messages first."""


def drop_oldest(count: int) -> dict[str, Any]:
    """The marker that makes :func:`add_messages` drop the ``count`` oldest messages."""
    return {"role": DROP_ROLE, "count": count}


def add_messages(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``messages`` reducer: append, after dropping the oldest when the update starts with a marker.

    Turns folded into the summary are dropped, so a checkpoint holds about one context budget of
    messages however long the conversation (the event log keeps every message).
    """
    if right and right[0].get("role") == DROP_ROLE:
        return [*left[int(right[0]["count"]) :], *right[1:]]
    return [*left, *right]


class CooState(TypedDict, total=False):
    """One conversation (thread = session key)."""

    messages: Annotated[list[dict[str, Any]], add_messages]
    context: list[dict[str, Any]]
    """No longer written (the prompt is built inside the model step); older checkpoints may hold it."""
    tool_rounds: int
    reply: str
    reply_log: str | None
    offline: bool
    awaiting: dict[str, str] | None
    cards: list[str]
    summary: str
    summarized: int
    """Older checkpoints: how many leading messages are already in the summary (now dropped instead)."""
    turn_key: str | None
    horizon: dict[str, Any] | None
    """The message the turn answers (``graph.conversation.recall.Horizon``): its recall is limited to what came
    before."""


@dataclass(frozen=True)
class GraphContext:
    """Per-run dependencies, passed as LangGraph runtime context (never checkpointed)."""

    contexts: Contexts
    """The runtime's one factory of this run's proposal and tool contexts; the stores, the zone, the currency
    and the calendar clock below are its."""
    llm: LLMClient
    tools: ToolBox
    session: str
    max_tool_rounds: int
    requested_by: str = ""
    approvals: ApprovalService | None = None
    context_budget: int = 6000
    recall: SessionRecall | None = None
    """The conversation's prompt recall (None: recall on the spot, e.g. in tests of one node)."""
    contacts: ContactNames | None = None
    """Contacts by name, read again only when records changed (None: read them every turn)."""

    @property
    def db(self) -> Database:
        return self.contexts.db

    @property
    def timezone(self) -> str:
        return self.contexts.timezone

    @property
    def currency(self) -> str:
        return self.contexts.currency

    @property
    def records(self) -> Records | None:
        return self.contexts.records

    @property
    def profile(self) -> ProfileStore | None:
        return self.contexts.profile

    @property
    def memory(self) -> Memory | None:
        return self.contexts.memory

    @property
    def scope(self) -> str:
        return self.contexts.scope

    @property
    def clock(self) -> Callable[[], datetime]:
        """Now (aware): the prompt's time, and its tools' and proposals' today."""
        return self.contexts.clock
