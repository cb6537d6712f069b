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
from graph.approvals.policy import Risk
from graph.approvals.service import ApprovalService
from graph.conversation.action_tools import approval_id_for, build_action
from graph.conversation.context import as_data
from graph.conversation.schema_text import clean_schema, field_errors
from graph.conversation.tools import ToolBox, ToolContext
from graph.errors import UserFacingError
from graph.goals.skills import Skill
from graph.models.llm import LLMClient
from graph.models.text_calls import with_text_calls
from graph.spend.budget import Limit
from memory.approvals import ApprovalRow
from prompts import load_prompt

FINISH = "finish_task"
CLIP = 1_500  # how much of a tool's output a trace keeps
MAX_NUDGES = 2  # how often one attempt is told its answer did not go on (empty, cut off, or text without the call)


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
    cut: bool  # the last answer was cut at the output limit
    nudges: int
    failure: str  # why the attempt ended without a result (empty when it has one, or waits on its cards)


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
    max_tokens: int | None = None
    """The output limit of each call (None: the configured one)."""
    thread: str = ""
    requested_by: str = ""
    schemas: list[dict[str, Any]] = field(default_factory=list)
    allowed: frozenset[str] = frozenset()
    """The tools this attempt may call: the skill's own and the trusted outside reads it may use."""
    goal_active: Callable[[], Awaitable[bool]] | None = None
    """Asked before each proposal: False when the goal was cancelled meanwhile (then nothing is proposed)."""


def finish_schema(skill: Skill) -> dict[str, Any]:
    """The tool that ends a task with the skill's output."""
    params = clean_schema(skill.output.model_json_schema())
    description = (
        "End the task (the only way to end it). status done: summary says what was done or found, artifacts "
        "reference what was made; needs_operator: summary is your question for the operator; failed: summary "
        "says why it cannot be done."
    )
    return {"type": "function", "function": {"name": FINISH, "description": description, "parameters": params}}


async def call_model(state: SkillState, runtime: Runtime[SkillContext]) -> dict[str, Any]:
    """Ask the model for the next step (the budget is reserved first, with the goal as the workflow)."""
    ctx = runtime.context
    last_round = state.get("rounds", 0) >= ctx.max_rounds - 1
    tools = [finish_schema(ctx.skill)] if last_round else [*ctx.schemas, finish_schema(ctx.skill)]
    reply = await ctx.llm.chat(
        state["messages"],
        tools,
        workflow=ctx.workflow,
        model=ctx.model,
        limit=ctx.limit,
        session=ctx.thread,
        max_tokens=ctx.max_tokens,
    )
    reply = with_text_calls(reply, [t["function"]["name"] for t in tools])
    step: dict[str, Any] = {
        "step": "model",
        "model": reply.model,
        "tokens": [reply.prompt_tokens, reply.completion_tokens],
    }
    step["cost"] = float(f"{reply.cost:.6f}")
    message = reply.as_message()
    cut = reply.finish_reason == "length"
    if cut:
        step["cut"] = True
        message.pop("tool_calls", None)  # arguments cut off midway are no call
    return {
        "messages": [message],
        "trace": [step],
        "cost": state.get("cost", 0.0) + reply.cost,
        "model": reply.model,
        "cut": cut,
    }


def route_after_model(state: SkillState, runtime: Runtime[SkillContext]) -> Literal["act", "nudge", "finish"]:
    """Tool calls -> act on them. Text after proposing -> the attempt waits for its cards. Otherwise (an empty
    answer, one cut off, or text without finish_task) the model is told once or twice what went wrong; then the
    attempt ends without a result."""
    last = state["messages"][-1]
    if last.get("tool_calls"):
        return "act"
    if state.get("proposals") and not state.get("cut"):
        return "finish"
    if state.get("nudges", 0) < MAX_NUDGES and state.get("rounds", 0) < runtime.context.max_rounds:
        return "nudge"
    return "finish"


async def nudge(state: SkillState, runtime: Runtime[SkillContext]) -> dict[str, Any]:
    """Tell the model why its answer did not move the task on (a nudge spends a round)."""
    last = state["messages"][-1]
    if state.get("cut"):
        limit = runtime.context.max_tokens or "the"
        text = load_prompt("skill_nudge_cut").format(limit=limit)
    elif not str(last.get("content") or "").strip():
        text = load_prompt("skill_nudge_empty")
    else:
        text = load_prompt("skill_nudge_text")
    return {
        "messages": [{"role": "user", "content": text.strip()}],
        "nudges": state.get("nudges", 0) + 1,
        "rounds": state.get("rounds", 0) + 1,
        "trace": [{"step": "nudge", "why": text.strip()[:120]}],
    }


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
        elif name not in ctx.allowed:
            tools = ", ".join([*sorted(ctx.allowed), FINISH])
            output = f"error: there is no tool {name[:60]!r} here; the tools are {tools}"
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


async def finish(state: SkillState, runtime: Runtime[SkillContext]) -> dict[str, Any]:
    """Only a finish_task call ends a task with a result. Without one, an attempt that proposed waits for its
    cards; any other ends as a failure, saying why (an empty answer, a cut one, text, or no rounds left)."""
    if state.get("result") is not None or state.get("proposals"):
        return {}
    return {"failure": failure_reason(state, runtime.context.max_rounds)}


def failure_reason(state: SkillState, max_rounds: int) -> str:
    """Why an attempt ended without calling finish_task, in the operator's words."""
    last = state["messages"][-1] if state.get("messages") else {}
    text = str(last.get("content") or "").strip() if last.get("role") == "assistant" else ""
    if last.get("role") == "tool" or state.get("rounds", 0) >= max_rounds:
        return f"the model used all {max_rounds} rounds without finishing the task"
    if state.get("cut"):
        return "the model's answer was cut off at its output limit, again and again"
    if not text:
        return "the model gave empty answers instead of finishing the task"
    return f'the model answered in text without finishing the task ("{text[:160]}")'


def build_skill_graph() -> StateGraph[SkillState, SkillContext]:
    """The uncompiled subgraph every skill runs in."""
    builder: StateGraph[SkillState, SkillContext] = StateGraph(SkillState, context_schema=SkillContext)
    builder.add_node("call_model", call_model)
    builder.add_node("act", act)
    builder.add_node("nudge", nudge)
    builder.add_node("finish", finish)
    builder.add_edge(START, "call_model")
    builder.add_conditional_edges("call_model", route_after_model)
    builder.add_edge("nudge", "call_model")
    builder.add_conditional_edges("act", route_after_act)
    builder.add_edge("finish", END)
    return builder


def _finish(skill: Skill, raw: str, current: dict[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
    try:
        output = skill.output.model_validate(json.loads(raw or "{}"))
    except json.JSONDecodeError as exc:
        return f"error: the arguments are not valid JSON ({exc.msg}); call {FINISH} again", current
    except ValidationError as exc:
        return f"error: the result does not fit: {field_errors(exc)}; call {FINISH} again", current
    return "finished", output.model_dump()


async def _propose(ctx: SkillContext, name: str, raw: str, used: list[str], steps: list[str]) -> tuple[str, list[str]]:
    """An action tool call becomes a card (or a queued action, where the policy allows); ``steps`` gets its kind."""
    try:
        args = json.loads(raw or "{}")
    except json.JSONDecodeError:
        args = {}
    reason = str(args.pop("reason", "") or "").strip() if isinstance(args, dict) else ""
    if not reason:
        return f"error: bad arguments for {name}: reason: Field required (one line: why this action, why now)", []
    try:
        action = await build_action(ctx.approvals.registry, name, json.dumps(args), ctx.proposal_ctx)
    except UserFacingError as exc:
        return f"error: {exc.reason}", []
    approval_id = step_id(ctx.task_id, ctx.stretch, action.kind, steps.count(action.kind))
    steps.append(action.kind)
    earlier = await _earlier(ctx, approval_id, action)
    if earlier is None:
        earlier = await _same_recipient(ctx, action)
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


def recipient(action: Action) -> str:
    """Who an action goes to, for telling a reworded duplicate from a new action ("" when it has no recipient)."""
    fields = action.model_dump()
    for name in ("to", "customer_email", "email", "contact_id"):
        value = fields.get(name)
        if value:
            found = sorted(value) if isinstance(value, list | tuple) else [value]
            return ",".join(str(v).strip().lower() for v in found)
    return ""


async def _same_recipient(ctx: SkillContext, action: Action) -> ApprovalRow | None:
    """A card of this task of the same kind to the same recipient, waiting or approved: a reworded duplicate is
    not a new action (a rejected one may be corrected in a later stretch; the runner bounds how often)."""
    who = recipient(action)
    if not who:
        return None
    goal_id = str(ctx.provenance.get("goal_id", ""))
    for row in await ctx.approvals.store.for_goal(goal_id):
        if row.context.get("task_id") != ctx.task_id or row.kind != action.kind or row.state not in OPEN_OR_DONE:
            continue
        kind = ctx.approvals.kind(row.kind)
        if recipient(kind.parse(row.action)) == who:
            return await ctx.approvals.current(row.id, goal_id) or row
    return None


OPEN_OR_DONE = ("pending", "approved")


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
