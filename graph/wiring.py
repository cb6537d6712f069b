"""Wires the coordinator graph. Exports an uncompiled builder; the runtime compiles it with a
checkpointer it owns."""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from graph.nodes import (
    assemble_context,
    await_approval,
    call_model,
    finish,
    propose_action,
    route_after_model,
    route_after_proposal,
    run_tools,
)
from graph.state import CooState, GraphContext


def build_graph() -> StateGraph[CooState, GraphContext]:
    """understand (assemble context) -> act (model, tools) -> approve -> (outbox executes) -> reply."""
    builder: StateGraph[CooState, GraphContext] = StateGraph(CooState, context_schema=GraphContext)
    builder.add_node("assemble_context", assemble_context)
    builder.add_node("call_model", call_model)
    builder.add_node("run_tools", run_tools)
    builder.add_node("propose_action", propose_action)
    builder.add_node("await_approval", await_approval)
    builder.add_node("finish", finish)
    builder.add_edge(START, "assemble_context")
    builder.add_edge("assemble_context", "call_model")
    builder.add_conditional_edges("call_model", route_after_model)
    builder.add_edge("run_tools", "assemble_context")
    builder.add_conditional_edges("propose_action", route_after_proposal)
    builder.add_edge("await_approval", "assemble_context")
    builder.add_edge("finish", END)
    return builder
