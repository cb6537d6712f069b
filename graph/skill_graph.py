"""One task, run by its skill as a small LangGraph subgraph: call the model -> act (allowed tools, proposals)
-> ... bounded rounds -> finish with the skill's output schema.

Outward actions are only *proposed*: each becomes an approval card (or, where the operator's policy
allows, a queued action), with an id derived from the task and the action's digest, so a re-run of the
task finds its own card instead of making another (I7).
"""

from __future__ import annotations

import hashlib
import json
import operator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from pydantic import ValidationError

from connectors.base import Context
from graph.action_tools import build_action
from graph.approvals import ApprovalService
from graph.budget import Limit
from graph.context import as_data
from graph.errors import UserFacingError
from graph.llm import LLMClient
from graph.policy import Risk
from graph.skills import Skill
from graph.tools import ToolBox, ToolContext

FINISH = "finish_task"
CLIP = 1_500  # how much of a tool's output a trace keeps


class SkillState(TypedDict, total=False):
    """One attempt at one task (not checkpointed: a re-run starts over, and proposals dedupe by id)."""

    messages: Annotated[list[dict[str, Any]], operator.add]
    rounds: int
    result: dict[str, Any] | None
    proposals: Annotated[list[str], operator.add]
    trace: Annotated[list[dict[str, Any]], operator.add]
    used: Annotated[list[str], operator.add]
    cost: float
    model: str


@dataclass(frozen=True)
class SkillContext:
    """What an attempt may use (LangGraph runtime context, never stored)."""

    skill: Skill
    llm: LLMClient
    tools: ToolBox
    tool_ctx: ToolContext
    approvals: ApprovalService
    proposal_ctx: Context
    workflow: str
    task_id: str
    provenance: dict[str, Any]
    model: str | None = None
    limit: Limit | None = None
    max_rounds: int = 6
    thread: str = ""
    requested_by: str = ""
    schemas: list[dict[str, Any]] = field(default_factory=list)


def finish_schema(skill: Skill) -> dict[str, Any]:
    """The tool that ends a task with the skill's output."""
    params = skill.output.model_json_schema()
    params.pop("title", None)
    description = "Finish the task: a short summary of what was done or found, and references to what was made."
    return {"type": "function", "function": {"name": FINISH, "description": description, "parameters": params}}


async def call_model(state: SkillState, runtime: Runtime[SkillContext]) -> dict[str, Any]:
    """Ask the model for the next step (the budget is reserved first, with the goal as the workflow)."""
    ctx = runtime.context
    last_round = state.get("rounds", 0) >= ctx.max_rounds - 1
    tools = [finish_schema(ctx.skill)] if last_round else [*ctx.schemas, finish_schema(ctx.skill)]
    reply = await ctx.llm.chat(
        state["messages"], tools, workflow=ctx.workflow, model=ctx.model, limit=ctx.limit, session=ctx.thread
    )
    step: dict[str, Any] = {
        "step": "model",
        "model": reply.model,
        "tokens": [reply.prompt_tokens, reply.completion_tokens],
    }
    step["cost"] = float(f"{reply.cost:.6f}")
    return {
        "messages": [reply.as_message()],
        "trace": [step],
        "cost": state.get("cost", 0.0) + reply.cost,
        "model": reply.model,
    }


def route_after_model(state: SkillState) -> Literal["act", "finish"]:
    """Tool calls -> act on them; plain text -> finish with it."""
    last = state["messages"][-1]
    return "act" if last.get("tool_calls") else "finish"


async def act(state: SkillState, runtime: Runtime[SkillContext]) -> dict[str, Any]:
    """Run the allowed tools, turn action tools into proposals, take the finish call's output."""
    ctx = runtime.context
    messages: list[dict[str, Any]] = []
    trace: list[dict[str, Any]] = []
    used: list[str] = []
    proposals: list[str] = []
    result = state.get("result")
    for call in state["messages"][-1].get("tool_calls", []):
        fn, call_id = call.get("function", {}), str(call.get("id", ""))
        name, raw = str(fn.get("name", "")), str(fn.get("arguments", "{}"))
        if name == FINISH:
            output, result = _finish(ctx.skill, raw, result)
        elif name not in ctx.skill.tools:
            output = f"error: {name} is not a tool of the {ctx.skill.name} skill"
        elif ctx.approvals.registry.for_tool(name) is not None:
            output, proposed = await _propose(ctx, name, raw, state.get("used", []) + used)
            proposals += proposed
        else:
            output = await ctx.tools.run(ctx.tool_ctx, name, raw)
            if not output.startswith("error:"):
                used.append(f"{name}({_short(raw)}) -> {output.splitlines()[0][:120] if output else ''}")
        trace.append({"step": "tool", "tool": name, "args": raw[:CLIP], "output": output[:CLIP]})
        messages.append({"role": "tool", "tool_call_id": call_id, "content": f"<data>\n{as_data(output)}\n</data>"})
    return {
        "messages": messages,
        "trace": trace,
        "used": used,
        "proposals": proposals,
        "result": result,
        "rounds": state.get("rounds", 0) + 1,
    }


def route_after_act(state: SkillState, runtime: Runtime[SkillContext]) -> Literal["call_model", "finish"]:
    """Done when the task finished, or when its rounds are spent."""
    if state.get("result") is not None or state.get("rounds", 0) >= runtime.context.max_rounds:
        return "finish"
    return "call_model"


async def finish(state: SkillState) -> dict[str, Any]:
    """Without a finish call, the model's last text is the summary."""
    if state.get("result") is not None:
        return {}
    text = ""
    for message in reversed(state.get("messages", [])):
        if message.get("role") == "assistant" and message.get("content"):
            text = str(message["content"])
            break
    return {"result": {"summary": (text or "(the task ended without a summary)")[:2000], "artifacts": []}}


def build_skill_graph() -> StateGraph[SkillState, SkillContext]:
    """The uncompiled subgraph every skill runs in."""
    builder: StateGraph[SkillState, SkillContext] = StateGraph(SkillState, context_schema=SkillContext)
    builder.add_node("call_model", call_model)
    builder.add_node("act", act)
    builder.add_node("finish", finish)
    builder.add_edge(START, "call_model")
    builder.add_conditional_edges("call_model", route_after_model)
    builder.add_conditional_edges("act", route_after_act)
    builder.add_edge("finish", END)
    return builder


def _finish(skill: Skill, raw: str, current: dict[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
    try:
        output = skill.output.model_validate(json.loads(raw or "{}"))
    except (json.JSONDecodeError, ValidationError) as exc:
        return f"error: the result does not fit the schema: {str(exc)[:300]}", current
    return "finished", output.model_dump()


async def _propose(ctx: SkillContext, name: str, raw: str, used: list[str]) -> tuple[str, list[str]]:
    """An action tool call becomes a card (or a queued action, where the policy allows)."""
    try:
        args = json.loads(raw or "{}")
    except json.JSONDecodeError:
        args = {}
    reason = str(args.pop("reason", "")) if isinstance(args, dict) else ""
    try:
        action = await build_action(ctx.approvals.registry, name, json.dumps(args), ctx.proposal_ctx)
    except UserFacingError as exc:
        return f"error: {exc.reason}", []
    # The same action proposed again by a re-run of this task finds its own card (I7).
    approval_id = hashlib.sha256(f"{ctx.task_id}\x00{action.digest()}".encode()).hexdigest()[:12]
    context = {**ctx.provenance, "reason": reason[:300], "used": used[-5:]}
    try:
        proposal = await ctx.approvals.propose(
            action, ctx.thread, "task", ctx.requested_by, approval_id=approval_id, context=context
        )
    except UserFacingError as exc:
        return f"error: {exc.reason}", []
    if proposal.approval is None:
        return "error: the operator's policy forbids this action", []
    if proposal.approval.state != "pending":
        # Proposed by an earlier run of this task and decided since: nothing new is proposed.
        outbox = await ctx.approvals.store.outbox(proposal.approval.id)
        done = outbox.state if outbox else proposal.approval.state
        return f"this was proposed earlier (id {proposal.approval.id}) and is {done}; do not propose it again", []
    if proposal.risk is Risk.DIRECT:
        return f"queued without a card (operator's policy); id {proposal.approval.id}", []
    return f"a card was shown to the operator (id {proposal.approval.id}); the task waits for the decision", [
        proposal.approval.id
    ]


def _short(raw: str) -> str:
    try:
        args = json.loads(raw or "{}")
    except json.JSONDecodeError:
        return raw[:60]
    return ", ".join(f"{k}={str(v)[:40]}" for k, v in args.items())[:100] if isinstance(args, dict) else raw[:60]
