"""The coordinator: runs one operator turn, or one card decision, through the compiled graph."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from graph.approvals import ApprovalService
from graph.llm import LLMClient
from graph.record_tools import RECORD_TOOLS
from graph.settings import LLMSettings
from graph.state import GraphContext
from graph.tools import SAFE_TOOLS, ToolBox
from graph.wiring import build_graph
from memory.api import Memory
from memory.db import Database
from memory.profile import ProfileStore
from memory.records import Records

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TurnResult:
    """What one run produced: reply text and the approval ids whose cards must be shown."""

    reply: str
    cards: tuple[str, ...] = ()


class Coordinator:
    """Compiles the graph with an injected checkpointer; one thread per session key."""

    def __init__(
        self,
        db: Database,
        llm: LLMClient,
        checkpointer: BaseCheckpointSaver[Any],
        settings: LLMSettings,
        timezone: str,
        tools: ToolBox | None = None,
        approvals: ApprovalService | None = None,
        email_from: str | None = None,
        records: Records | None = None,
        profile: ProfileStore | None = None,
        memory: Memory | None = None,
    ) -> None:
        self._db = db
        self._llm = llm
        self._settings = settings
        self._timezone = timezone
        self._tools = tools or ToolBox((*SAFE_TOOLS, *(RECORD_TOOLS if records and profile else ())))
        self._approvals = approvals
        self._email_from = email_from
        self._records = records
        self._profile = profile
        self._memory = memory
        self._graph: CompiledStateGraph[Any, Any, Any, Any] = build_graph().compile(checkpointer=checkpointer)

    @property
    def llm(self) -> LLMClient:
        """The model client (for status and doctor)."""
        return self._llm

    def _context(self, session: str, requested_by: str) -> GraphContext:
        return GraphContext(
            db=self._db,
            llm=self._llm,
            tools=self._tools,
            session=session,
            timezone=self._timezone,
            max_tool_rounds=self._settings.max_tool_rounds,
            requested_by=requested_by,
            approvals=self._approvals,
            email_from=self._email_from,
            records=self._records,
            profile=self._profile,
            memory=self._memory,
            context_budget=self._settings.context_budget,
        )

    @staticmethod
    def _config(session: str) -> RunnableConfig:
        return {"configurable": {"thread_id": session}}

    async def respond(self, session: str, text: str, requested_by: str = "") -> TurnResult:
        """Run one operator message through the graph."""
        start = {
            "messages": [{"role": "user", "content": text}],
            "tool_rounds": 0,
            "reply": "",
            "offline": False,
            "awaiting": None,
            "cards": [],
        }
        result = await self._graph.ainvoke(
            start,
            config=self._config(session),
            context=self._context(session, requested_by),
            durability="sync",
        )
        return TurnResult(str(result.get("reply", "")), tuple(result.get("cards", [])))

    async def waiting_for(self, session: str) -> str | None:
        """The root approval id the thread is interrupted on, if any."""
        snapshot = await self._graph.aget_state(self._config(session))
        for task in snapshot.tasks:
            for intr in task.interrupts:
                if isinstance(intr.value, dict) and intr.value.get("approval_id"):
                    return str(intr.value["approval_id"])
        return None

    async def resume(self, session: str, root_id: str, decision: dict[str, str], requested_by: str = "") -> TurnResult:
        """Resume a thread waiting on ``root_id`` with the card's decision. Resuming a thread that is
        not waiting on it (the operator moved on, or it was resumed already) is skipped, not replayed."""
        if await self.waiting_for(session) != root_id:
            log.info("session %s is not waiting on approval %s; not resuming", session, root_id)
            return TurnResult("")
        result = await self._graph.ainvoke(
            Command(resume=decision),
            config=self._config(session),
            context=self._context(session, requested_by),
            durability="sync",
        )
        return TurnResult(str(result.get("reply", "")), tuple(result.get("cards", [])))

    async def history(self, session: str) -> list[dict[str, Any]]:
        """The stored messages of a thread (for tests and export)."""
        snapshot = await self._graph.aget_state(self._config(session))
        return list(snapshot.values.get("messages", []))
