"""Wires the coordinator graph. Exports an uncompiled builder; the runtime compiles it with a
checkpointer it owns."""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from graph.conversation.nodes import (
    await_approval,
    call_model,
    propose_action,
    route_after_model,
    route_after_proposal,
    run_tools,
)
from graph.conversation.state import CooState, GraphContext

TOOL_STEPS = ("run_tools", "propose_action")
"""The steps after a model answer that asked for tools: a run stops before them until that answer is stored."""


def build_graph() -> StateGraph[CooState, GraphContext]:
    """understand + act (prompt and model, one step) -> tools or approve -> (outbox executes) -> reply."""
    builder: StateGraph[CooState, GraphContext] = StateGraph(CooState, context_schema=GraphContext)
    builder.add_node("call_model", call_model)
    builder.add_node("run_tools", run_tools)
    builder.add_node("propose_action", propose_action)
    builder.add_node("await_approval", await_approval)
    builder.add_edge(START, "call_model")
    builder.add_conditional_edges("call_model", route_after_model, ["run_tools", "propose_action", END])
    builder.add_edge("run_tools", "call_model")
    builder.add_conditional_edges("propose_action", route_after_proposal, ["await_approval", "call_model"])
    builder.add_edge("await_approval", "call_model")
    return builder
