"""The coordinator: runs one operator turn, or one card decision, through the compiled graph."""

from __future__ import annotations

import functools
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from graph.approvals.service import ApprovalService
from graph.contexts import Contexts
from graph.conversation.recall import ContactNames, Horizon, SessionRecall
from graph.conversation.record_tools import RECORD_TOOLS
from graph.conversation.state import GraphContext
from graph.conversation.tools import RECALL_TOOL, SAFE_TOOLS, ToolBox
from graph.conversation.wiring import TOOL_STEPS, build_graph
from graph.errors import UserFacingError
from graph.models.llm import LLMClient, estimate_tokens
from graph.settings import LLMSettings
from prompts.messages import TOO_LONG_FOR_MODEL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TurnResult:
    """What one run produced: reply text and the approval ids whose cards must be shown.

    ``log_text``, when set, is what the event log keeps instead of the reply (e.g. references
    instead of quoted memories).
    """

    reply: str
    cards: tuple[str, ...] = ()
    log_text: str | None = None

    @classmethod
    def of(cls, values: dict[str, Any]) -> TurnResult:
        """The result held in a run's final state."""
        return cls(str(values.get("reply", "")), tuple(values.get("cards", [])), values.get("reply_log"))


@functools.cache
def _compiled_conversation_graph() -> CompiledStateGraph[Any, Any, Any, Any]:
    """The conversation graph, compiled once per process without a checkpointer; each coordinator takes a
    copy bound to its own. The compiled nodes and channel specs are read-only while a run has its own
    channels, so copies can share them. Compiling costs about 4 ms of CPU (LangGraph disassembles every
    node, looking for subgraphs), a copy about 0.03 ms."""
    return build_graph().compile(interrupt_before=list(TOOL_STEPS))


class Coordinator:
    """Runs the conversation graph with an injected checkpointer; one thread per session key.

    Durability: a turn's first run stores its checkpoint when it stops (``durability="exit"``), which
    for the one-step plain turn is exactly what ``"sync"`` would store, minus the input checkpoint
    (the inbox already holds the update: a crash before the model answered runs the turn again).
    The run stops before any tool step (``interrupt_before``), so a model answer that asked for tools
    is stored before any tool runs or any card is proposed; the rest of the turn, and every resume
    after a card's decision, runs with ``durability="sync"``.
    """

    def __init__(
        self,
        llm: LLMClient,
        checkpointer: BaseCheckpointSaver[Any],
        settings: LLMSettings,
        contexts: Contexts,
        tools: ToolBox | None = None,
        approvals: ApprovalService | None = None,
        recall: SessionRecall | None = None,
    ) -> None:
        """``contexts`` is the runtime's one factory of proposal and tool contexts: the stores, the zone, the
        currency and the calendar clock a run uses come from it. ``recall`` is the prompts' prepared recall
        (default: one over the contexts' memory that never yields)."""
        self._db = contexts.db
        self._llm = llm
        self._settings = settings
        self._contexts = contexts
        records, profile = contexts.records, contexts.profile
        # recall_memory: memory beyond the few lines the prompt shows (it searches the message log without memory).
        self._tools = tools or ToolBox((*SAFE_TOOLS, RECALL_TOOL, *(RECORD_TOOLS if records and profile else ())))
        self._approvals = approvals
        self.recall = recall or SessionRecall(contexts.db, contexts.memory, contexts.scope)
        """The prompts' recall, prepared in the background per conversation."""
        self._contacts = ContactNames(records, contexts.db) if records is not None else None
        self._graph = _compiled_conversation_graph().copy({"checkpointer": checkpointer})

    async def aclose(self) -> None:
        """Stop background work (recall being prepared)."""
        await self.recall.aclose()

    @property
    def llm(self) -> LLMClient:
        """The model client (for status and doctor)."""
        return self._llm

    def _context(self, session: str, requested_by: str) -> GraphContext:
        return GraphContext(
            contexts=self._contexts,
            llm=self._llm,
            tools=self._tools,
            session=session,
            max_tool_rounds=self._settings.max_tool_rounds,
            requested_by=requested_by,
            approvals=self._approvals,
            context_budget=self._settings.context_budget,
            recall=self.recall,
            contacts=self._contacts,
        )

    @staticmethod
    def _config(session: str) -> RunnableConfig:
        return {"configurable": {"thread_id": session}}

    async def respond(
        self,
        session: str,
        text: str,
        requested_by: str = "",
        turn_key: str | None = None,
        replaying: bool = False,
        answering: int | None = None,
    ) -> TurnResult:
        """Run one operator message through the graph.

        ``turn_key`` names the turn (the platform's delivery id). When a crash made the same delivery
        run again (``replaying``), the turn resumes from its last checkpoint instead of starting over,
        so a model call that already completed is not made again. ``answering`` is the message's event
        id: the turn recalls only what was said before it.
        """
        limit = self._settings.context_budget // 2
        if self._llm.configured and estimate_tokens(text) > limit:
            raise UserFacingError(TOO_LONG_FOR_MODEL.format(tokens=estimate_tokens(text), limit=limit))
        context = self._context(session, requested_by)
        if replaying and turn_key is not None:
            resumed = await self._resume_turn(session, turn_key, context)
            if resumed is not None:
                return resumed
        # A turn without a delivery id (the console) still gets a name of its own: proposals are named
        # by their turn, and tool-call ids alone may repeat from one answer to the next.
        horizon = await self._horizon(answering)
        values = await self.start_turn(
            session, text, requested_by, turn_key or f"local:{uuid.uuid4().hex}", horizon=horizon
        )
        # The next turns' prompts recall by meaning what this message is about (off the reply path).
        self.recall.prepare(session, text)
        return TurnResult.of(await self._run_tools(values, self._config(session), context))

    async def _horizon(self, event_id: int | None) -> Horizon | None:
        """The horizon of the message with this event id (None: no id, or the event is not there)."""
        if not event_id:
            return None
        found = await self._db.events_by_id([event_id])
        return Horizon(found[0].id, found[0].at) if found else None

    async def start_turn(
        self,
        session: str,
        text: str,
        requested_by: str = "",
        turn_key: str | None = None,
        horizon: Horizon | None = None,
    ) -> dict[str, Any]:
        """The first run of a turn: up to its end, or up to the first tool step its model answer asks
        for (that answer is then stored: a crash from here on resumes with it, see :meth:`respond`).
        ``horizon`` limits its recall to what was said before the message. Returns the run's state values."""
        start = {
            "messages": [{"role": "user", "content": text}],
            "tool_rounds": 0,
            "reply": "",
            "reply_log": None,
            "offline": False,
            "awaiting": None,
            "cards": [],
            "turn_key": turn_key,
            "horizon": horizon.to_state() if horizon is not None else None,
        }
        context = self._context(session, requested_by)
        values: dict[str, Any] = await self._graph.ainvoke(
            start, config=self._config(session), context=context, durability="exit"
        )
        return values

    async def _run_tools(self, values: dict[str, Any], config: RunnableConfig, context: GraphContext) -> dict[str, Any]:
        """Go on with a turn that stopped before a tool step, until it ends or waits for a card."""
        while _asked_for_tools(values):
            snapshot = await self._graph.aget_state(config)
            if not set(snapshot.next) & set(TOOL_STEPS) or any(task.interrupts for task in snapshot.tasks):
                break
            values = await self._graph.ainvoke(None, config=config, context=context, durability="sync")
        return values

    async def _resume_turn(self, session: str, turn_key: str, context: GraphContext) -> TurnResult | None:
        """The result of a turn a crash interrupted, resumed from its last checkpoint; None when the turn
        never got past its input (it is then simply run again)."""
        config = self._config(session)
        snapshot = await self._graph.aget_state(config)
        # An "input" checkpoint holds the new message only as a pending write: nothing of the turn ran yet.
        started = snapshot.metadata is not None and snapshot.metadata.get("source") != "input"
        if not started or snapshot.values.get("turn_key") != turn_key:
            return None
        if any(step not in self._graph.nodes for step in snapshot.next):
            return None  # stopped at a step an older version had: run the turn again
        waiting = any(task.interrupts for task in snapshot.tasks)
        if not snapshot.next or waiting:
            return TurnResult.of(snapshot.values)
        log.info("session %s: resuming turn %s from its checkpoint", session, turn_key)
        values = await self._graph.ainvoke(None, config=config, context=context, durability="sync")
        return TurnResult.of(await self._run_tools(values, config, context))

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
        config, context = self._config(session), self._context(session, requested_by)
        result = await self._graph.ainvoke(Command(resume=decision), config=config, context=context, durability="sync")
        return TurnResult.of(await self._run_tools(result, config, context))

    async def history(self, session: str) -> list[dict[str, Any]]:
        """The stored messages of a thread (for tests and export)."""
        snapshot = await self._graph.aget_state(self._config(session))
        return list(snapshot.values.get("messages", []))


def _asked_for_tools(values: dict[str, Any]) -> bool:
    """True when the run's last message is a model answer with tool calls (a tool step may be next)."""
    messages = values.get("messages") or []
    last = messages[-1] if messages else {}
    return not values.get("offline") and last.get("role") == "assistant" and bool(last.get("tool_calls"))
