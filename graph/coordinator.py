"""The coordinator: runs one operator turn through the compiled graph."""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph

from graph.llm import LLMClient
from graph.settings import LLMSettings
from graph.state import GraphContext
from graph.tools import ToolBox
from graph.wiring import build_graph
from memory.db import Database


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
    ) -> None:
        self._db = db
        self._llm = llm
        self._settings = settings
        self._timezone = timezone
        self._tools = tools or ToolBox()
        self._graph: CompiledStateGraph[Any, Any, Any, Any] = build_graph().compile(checkpointer=checkpointer)

    @property
    def llm(self) -> LLMClient:
        """The model client (for status and doctor)."""
        return self._llm

    async def respond(self, session: str, text: str) -> str:
        """Run one operator message through the graph and return the reply text."""
        context = GraphContext(
            db=self._db,
            llm=self._llm,
            tools=self._tools,
            session=session,
            timezone=self._timezone,
            recent_turns=self._settings.recent_turns,
            max_tool_rounds=self._settings.max_tool_rounds,
        )
        result = await self._graph.ainvoke(
            {
                "messages": [{"role": "user", "content": text}],
                "tool_rounds": 0,
                "reply": "",
                "offline": False,
            },
            config={"configurable": {"thread_id": session}},
            context=context,
            durability="sync",
        )
        return str(result.get("reply", ""))

    async def history(self, session: str) -> list[dict[str, Any]]:
        """The stored messages of a thread (for tests and export)."""
        snapshot = await self._graph.aget_state({"configurable": {"thread_id": session}})
        return list(snapshot.values.get("messages", []))
