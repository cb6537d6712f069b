"""The coordinator's wiring on its own: an uncompiled builder each call, compiled here with a real SQLite
checkpointer and the fake model. A plain answer is one step; a tool answer stops before its tool step until
resumed, then the tool's result goes back to the model as data; a call to a tool that does not exist comes back
as an error line and the turn goes on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from bot.compose.model import open_checkpoints
from graph.contexts import Contexts
from graph.conversation.state import GraphContext
from graph.conversation.tools import ToolBox
from graph.conversation.wiring import TOOL_STEPS, build_graph
from tests.fakes.openai_api import FakeOpenAI, Scripted
from tests.graph.parts import SESSION, goal_parts

CONFIG: Any = {"configurable": {"thread_id": SESSION}}
START = {"messages": [{"role": "user", "content": "what time is it?"}], "tool_rounds": 0, "cards": []}


@asynccontextmanager
async def compiled(
    tmp_path: Path, fake: FakeOpenAI
) -> AsyncIterator[tuple[CompiledStateGraph[Any, Any, Any, Any], GraphContext]]:
    async with goal_parts(tmp_path, fake) as parts, AsyncExitStack() as stack:
        saver, _ = await open_checkpoints(parts.settings, stack)
        graph = build_graph().compile(checkpointer=saver, interrupt_before=list(TOOL_STEPS))
        contexts = Contexts(parts.stores.db, "UTC", "USD")
        context = GraphContext(contexts, parts.llm, ToolBox(), SESSION, max_tool_rounds=2)
        yield graph, context


def test_each_call_gives_a_builder_of_its_own_with_the_four_steps() -> None:
    first, second = build_graph(), build_graph()
    assert first is not second  # nothing compiled or shared at import
    assert set(first.nodes) == {"call_model", "run_tools", "propose_action", "await_approval"}
    assert set(TOOL_STEPS) <= set(first.nodes)


async def test_a_plain_answer_is_one_step(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    async with compiled(tmp_path, fake_llm) as (graph, context):
        values = await graph.ainvoke(START, config=CONFIG, context=context)
        snapshot = await graph.aget_state(CONFIG)
    assert values["reply"] == "echo: what time is it?"
    assert snapshot.next == () and len(fake_llm.chat_requests) == 1


async def test_a_tool_answer_stops_before_its_tool_and_goes_on_when_resumed(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script.append(Scripted(tool_calls=[("current_time", {}), ("delete_everything", {"all": True})]))
    fake_llm.reply("It is noon.")
    async with compiled(tmp_path, fake_llm) as (graph, context):
        stopped = await graph.ainvoke(START, config=CONFIG, context=context)
        before = await graph.aget_state(CONFIG)
        assert len(fake_llm.chat_requests) == 1 and before.next == ("run_tools",)
        done = await graph.ainvoke(None, config=CONFIG, context=context)
    assert stopped["messages"][-1]["tool_calls"][0]["function"]["name"] == "current_time"
    results = [m["content"] for m in done["messages"] if m["role"] == "tool"]
    assert len(results) == 2 and all(r.startswith("<data>\n") and r.endswith("\n</data>") for r in results)
    assert "error: no tool named 'delete_everything'" in results[1]
    assert done["reply"] == "It is noon." and len(fake_llm.chat_requests) == 2
