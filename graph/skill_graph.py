"""One task, run by its skill as a small LangGraph subgraph: call the model -> act (allowed tools, proposals)
-> ... bounded rounds -> finish with the skill's output schema.

Outward actions are only *proposed*: each becomes an approval card (or, where the operator's policy
allows, a queued action). A proposal is named by its place in the task, not by its text: the task, the
stretch it runs in (how often it went on after its cards were decided), the action's kind and how many of
that kind this attempt proposed before. A re-run of the same stretch (after a crash or a failure) starts
over with no memory, and its model may word an email differently or compute another due date; its first
email is still the first email, finds the earlier attempt's card and is told about it, so the outward
action happens at most once per step of the task (I7). A later stretch knows the decisions (the task's
notes list them) and may propose anew, e.g. a corrected email after a rejection.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from pydantic import ValidationError

from connectors.base import Action, Context
from graph.action_tools import approval_id_for, build_action
from graph.approvals import ApprovalService
from graph.budget import Limit
from graph.context import as_data
from graph.errors import UserFacingError
from graph.llm import LLMClient
from graph.policy import Risk
from graph.skills import Skill
from graph.tools import ToolBox, ToolContext
from memory.approvals import ApprovalRow

FINISH = "finish_task"
CLIP = 1_500  # how much of a tool's output a trace keeps


class SkillState(TypedDict, total=False):
    """One attempt at one task (not checkpointed: a re-run starts over, and its proposals find the earlier ones
    by their place in the task)."""

    messages: Annotated[list[dict[str, Any]], operator.add]
    rounds: int
    result: dict[str, Any] | None
    proposals: Annotated[list[str], operator.add]
    steps: Annotated[list[str], operator.add]  # the kind of each action this attempt proposed, in order
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
    stretch: int = 0
    model: str | None = None
    limit: Limit | None = None
    max_rounds: int = 6
    thread: str = ""
    requested_by: str = ""
    schemas: list[dict[str, Any]] = field(default_factory=list)
    goal_active: Callable[[], Awaitable[bool]] | None = None
    """Asked before each proposal: False when the goal was cancelled meanwhile (then nothing is proposed)."""


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
    steps = list(state.get("steps", []))
    result = state.get("result")
    for call in state["messages"][-1].get("tool_calls", []):
        fn, call_id = call.get("function", {}), str(call.get("id", ""))
        name, raw = str(fn.get("name", "")), str(fn.get("arguments", "{}"))
        if name == FINISH:
            output, result = _finish(ctx.skill, raw, result)
        elif name not in ctx.skill.tools:
            output = f"error: {name} is not a tool of the {ctx.skill.name} skill"
        elif ctx.approvals.registry.for_tool(name) is not None:
            output, proposed = await _propose(ctx, name, raw, state.get("used", []) + used, steps)
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
        "steps": steps[len(state.get("steps", [])) :],
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


async def _propose(ctx: SkillContext, name: str, raw: str, used: list[str], steps: list[str]) -> tuple[str, list[str]]:
    """An action tool call becomes a card (or a queued action, where the policy allows); ``steps`` gets its kind."""
    try:
        args = json.loads(raw or "{}")
    except json.JSONDecodeError:
        args = {}
    reason = str(args.pop("reason", "")) if isinstance(args, dict) else ""
    try:
        action = await build_action(ctx.approvals.registry, name, json.dumps(args), ctx.proposal_ctx)
    except UserFacingError as exc:
        return f"error: {exc.reason}", []
    approval_id = step_id(ctx.task_id, ctx.stretch, action.kind, steps.count(action.kind))
    steps.append(action.kind)
    earlier = await _earlier(ctx, approval_id, action)
    if earlier is not None:
        return await _told_earlier(ctx, earlier)
    # Asked as late as possible: the operator may cancel the goal while the model thinks.
    if ctx.goal_active is not None and not await ctx.goal_active():
        return "error: the goal was cancelled; propose nothing more and finish the task", []
    context = {**ctx.provenance, "stretch": ctx.stretch, "reason": reason[:300], "used": used[-5:]}
    try:
        proposal = await ctx.approvals.propose(
            action, ctx.thread, "task", ctx.requested_by, approval_id=approval_id, context=context
        )
    except UserFacingError as exc:
        return f"error: {exc.reason}", []
    if proposal.approval is None:
        return "error: the operator's policy forbids this action", []
    if proposal.risk is Risk.DIRECT:
        return f"queued without a card (operator's policy); id {proposal.approval.id}", []
    return f"a card was shown to the operator (id {proposal.approval.id}); the task waits for the decision", [
        proposal.approval.id
    ]


def step_id(task_id: str, stretch: int, kind: str, ordinal: int) -> str:
    """The approval id of a task's ``ordinal``-th action of ``kind`` in one stretch of the task."""
    return approval_id_for(task_id, f"stretch-{stretch}", kind, str(ordinal))


async def _earlier(ctx: SkillContext, approval_id: str, action: Action) -> ApprovalRow | None:
    """What this task already proposed for this step, or the very same action at any step before."""
    goal_id = str(ctx.provenance.get("goal_id", ""))
    found = await ctx.approvals.find(approval_id)
    if found is None:
        # Rows named by the task and the action's digest (before steps had names) still count.
        found = await ctx.approvals.find(approval_id_for(ctx.task_id, action.digest()))
    if found is None:
        ours = [r for r in await ctx.approvals.store.for_goal(goal_id) if r.context.get("task_id") == ctx.task_id]
        found = next((r for r in ours if r.digest == ctx.approvals.digest(action)), None)
    if found is None:
        return None
    return await ctx.approvals.current(found.id, goal_id) or found


async def _told_earlier(ctx: SkillContext, row: ApprovalRow) -> tuple[str, list[str]]:
    """Tell the model what an earlier attempt proposed and what became of it; a pending card is waited on."""
    kind = ctx.approvals.kind(row.kind)
    what = kind.summary(kind.parse(row.action))
    if row.state == "pending":
        return (
            f"this was proposed earlier ({what}; id {row.id}) and its card waits for the operator; "
            "do not propose it again; the task waits for the decision",
            [row.id],
        )
    outbox = await ctx.approvals.store.outbox(row.id)
    done = outbox.state if outbox else row.state
    return f"this was proposed earlier ({what}; id {row.id}) and is {done}; do not propose it again", []


def _short(raw: str) -> str:
    try:
        args = json.loads(raw or "{}")
    except json.JSONDecodeError:
        return raw[:60]
    return ", ".join(f"{k}={str(v)[:40]}" for k, v in args.items())[:100] if isinstance(args, dict) else raw[:60]
