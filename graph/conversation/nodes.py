"""Coordinator nodes: plain async functions returning partial state (the prompt they send: ``prompt.py``), and
the routers between them."""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from graph.approvals.policy import Risk
from graph.conversation.action_tools import approval_id_for, build_action
from graph.conversation.context import as_data
from graph.conversation.prompt import assemble_context, last_user_text, offered_tools, recall
from graph.conversation.recall import Horizon, relevant_for_listing
from graph.conversation.state import CooState, GraphContext
from graph.errors import ModelUnavailable, UserFacingError
from graph.models.llm import ModelReply
from graph.models.text_calls import with_text_calls
from graph.spend.budget import BudgetExceeded
from prompts import load_prompt
from prompts.messages import OFFLINE_NOTHING_RELATED, OFFLINE_RELATED

log = logging.getLogger(__name__)


def is_action_tool(ctx: GraphContext, name: str) -> bool:
    """True for a tool that proposes an outward action (it goes to the policy, never runs directly)."""
    return ctx.approvals is not None and ctx.approvals.registry.for_tool(name) is not None


EMPTY_ANSWER = "I could not put an answer together for that. Please ask again, perhaps in other words."


async def _ask(ctx: GraphContext, prompt: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ModelReply:
    """One answer: a tool call written as text becomes a real one; an empty answer is asked for once more, with
    the tools withdrawn (small models often answer nothing after a tool result); a cut one is said to be cut."""
    reply = with_text_calls(await ctx.llm.chat(prompt, tools, session=ctx.session), _names(tools))
    if not reply.content.strip() and not reply.tool_calls:
        again = [*prompt, {"role": "user", "content": load_prompt("empty_answer").strip()}]
        reply = await ctx.llm.chat(again, [], session=ctx.session)
    if reply.finish_reason == "length" and reply.content:
        reply = replace(reply, content=reply.content + CUT_NOTE, tool_calls=())
    return reply


def _names(tools: list[dict[str, Any]]) -> list[str]:
    return [str(t["function"]["name"]) for t in tools]


CUT_NOTE = "\n[… my answer was cut off here at its length limit]"


async def call_model(state: CooState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    """Build the prompt and ask the model: one step, so a plain turn is one checkpoint.

    An answer without tool calls is the reply. On an unreachable model: offline mode (telling the
    operator once).
    """
    ctx = runtime.context
    last_user = last_user_text(state.get("messages", []))
    horizon = Horizon.from_state(state.get("horizon"))
    mid_turn = bool(state.get("messages")) and state["messages"][-1].get("role") == "tool"
    if not ctx.llm.available():
        # After a card's decision the card itself shows the outcome; no offline boilerplate then.
        if mid_turn:
            return {"reply": "", "offline": True}
        text, logged = await offline_reply(ctx, last_user, horizon)
        return {"reply": text, "reply_log": logged, "offline": True}
    prompt, updates = await assemble_context(state, ctx)
    rounds = state.get("tool_rounds", 0)
    offered = offered_tools(ctx)
    tools = offered if rounds < ctx.max_tool_rounds else []
    try:
        reply = await _ask(ctx, prompt, tools)
    except BudgetExceeded as exc:
        # The first time, the alert with its buttons is the answer; after that, one short line.
        cap = exc.alert.budget
        text = (
            ""
            if exc.first
            else (
                f"The {exc.alert.workflow} budget is at its {cap.period} cap, so I did not call the model. "
                "/budget to change it; /remember, /recall and the slash commands still work."
            )
        )
        return {**updates, "reply": text, "offline": True}
    except ModelUnavailable as exc:
        text, logged = ("", "") if mid_turn else await offline_reply(ctx, last_user, horizon)
        if ctx.llm.take_outage_notice():
            notice = load_prompt("model_down").format(reason=str(exc)).strip()
            text, logged = (notice + "\n\n" + text).strip(), (notice + "\n\n" + logged).strip()
        return {**updates, "reply": text, "reply_log": logged, "offline": True}
    message = reply.as_message()
    if not tools and message.pop("tool_calls", None) and not message["content"]:
        # A model that keeps calling tools after they were withdrawn gets no further round.
        message["content"] = "I stopped after several tool rounds without reaching an answer."
    out: dict[str, Any] = {**updates, "messages": [*updates.get("messages", []), message], "offline": False}
    if not message.get("tool_calls"):
        out["reply"] = str(message.get("content") or "").strip() or EMPTY_ANSWER
    return out


async def route_after_model(
    state: CooState, runtime: Runtime[GraphContext]
) -> Literal["run_tools", "propose_action", "__end__"]:
    """Outward actions -> propose them; other tools -> run them; otherwise the turn is over.

    Async on purpose, like every router here: LangGraph runs a plain function in the loop's default
    thread pool, where it would queue behind whatever else waits there (e.g. embedding).
    """
    if state.get("offline"):
        return "__end__"
    messages = state.get("messages", [])
    calls = messages[-1].get("tool_calls") if messages and messages[-1].get("role") == "assistant" else None
    if not calls:
        return "__end__"
    if any(is_action_tool(runtime.context, str(c.get("function", {}).get("name"))) for c in calls):
        return "propose_action"
    return "run_tools"


async def propose_action(state: CooState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    """Turn action tool calls into approval rows (idempotent: ids derive from the tool call).

    This node has side effects, so it is separate from :func:`await_approval`, which re-runs from
    its top on resume and so must do nothing before ``interrupt()``.
    """
    ctx = runtime.context
    results: list[dict[str, Any]] = []
    awaiting: dict[str, str] | None = None
    cards: list[str] = []
    tool_ctx = ctx.contexts.tool(ctx.session)
    proposal_ctx = ctx.contexts.proposal(ctx.session, ctx.requested_by)
    rounds = state.get("tool_rounds", 0)
    for call in state["messages"][-1].get("tool_calls", []):
        fn, call_id = call.get("function", {}), str(call.get("id", ""))
        name, raw = str(fn.get("name", "")), str(fn.get("arguments", "{}"))
        if not is_action_tool(ctx, name):
            output = await ctx.tools.run(tool_ctx, name, raw)
        elif ctx.approvals is None:
            output = "error: outward actions are not available here"
        elif awaiting is not None:
            output = "error: one outward action per turn; propose it again once the first card is decided"
        else:
            # Tool-call ids alone do not name a proposal: some endpoints send empty ids, or ids that
            # repeat from one answer to the next. The turn and the round do, and stay the same on a re-run.
            approval_id = approval_id_for(ctx.session, state.get("turn_key") or "", str(rounds), call_id)
            try:
                # A re-run after a crash finds its proposal; building the action again could record a
                # second goal, plan it again, or date an invoice a day later.
                proposal = await ctx.approvals.propose_once(
                    approval_id,
                    partial(build_action, ctx.approvals.registry, name, raw, proposal_ctx),
                    ctx.session,
                    "graph",
                    ctx.requested_by,
                )
            except UserFacingError as exc:
                output = f"error: {exc.reason}"
            else:
                if proposal.approval is None:
                    output = "error: the operator's policy forbids this action"
                elif proposal.risk is Risk.DIRECT:
                    cards.append(proposal.approval.id)
                    output = f"queued for execution without a card (operator's policy); id {proposal.approval.id}"
                else:
                    cards.append(proposal.approval.id)
                    awaiting = {
                        "approval_id": proposal.approval.id,
                        "root_id": proposal.approval.root_id,
                        "tool_call_id": call_id,
                    }
                    continue
        results.append({"role": "tool", "tool_call_id": call_id, "content": f"<data>\n{as_data(output)}\n</data>"})
    return {
        "messages": results,
        "awaiting": awaiting,
        "cards": [*state.get("cards", []), *cards],
        "tool_rounds": rounds + 1,
    }


async def route_after_proposal(state: CooState) -> Literal["await_approval", "call_model"]:
    """Wait for the operator when a card is pending."""
    return "await_approval" if state.get("awaiting") else "call_model"


async def await_approval(state: CooState) -> dict[str, Any]:
    """Wait for the card's decision. Nothing before ``interrupt()``: this re-runs on resume."""
    waiting = state["awaiting"] or {}
    decision = interrupt({"approval_id": waiting.get("root_id", "")})
    outcome = str(decision.get("decision", "rejected")) if isinstance(decision, dict) else "rejected"
    detail = str(decision.get("detail", "")) if isinstance(decision, dict) else ""
    text = {
        "approved": "The operator approved the card; the action is queued and the card will show the result.",
        "rejected": "The operator rejected the card. Nothing was done.",
        "expired": "The card expired without a decision. Nothing was done.",
    }.get(outcome, f"Outcome: {outcome}.")
    if detail:
        text += f" {detail}"
    return {
        "messages": [{"role": "tool", "tool_call_id": waiting.get("tool_call_id", ""), "content": text}],
        "awaiting": None,
        "cards": [],  # those cards were shown by the run that proposed them
    }


async def run_tools(state: CooState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    """Run the safe tools the model asked for; results go back to the model as data."""
    ctx = runtime.context
    tool_ctx = ctx.contexts.tool(ctx.session)
    results: list[dict[str, Any]] = []
    for call in state["messages"][-1].get("tool_calls", []):
        fn = call.get("function", {})
        output = await ctx.tools.run(tool_ctx, str(fn.get("name", "")), str(fn.get("arguments", "{}")))
        await ctx.db.append_event(
            "tool.call",
            "coo",
            {"tool": fn.get("name"), "ok": not output.startswith("error:")},
            session=ctx.session,
        )
        results.append(
            {"role": "tool", "tool_call_id": call.get("id", ""), "content": f"<data>\n{as_data(output)}\n</data>"}
        )
    return {"messages": results, "tool_rounds": state.get("tool_rounds", 0) + 1}


async def offline_reply(ctx: GraphContext, text: str, horizon: Horizon | None = None) -> tuple[str, str]:
    """What the operator gets without a model: matching earlier messages, and how to add a model (none is
    configured) or that the configured one is not answering.

    Returns the reply and what the event log may keep of it: the references of what it quoted, never
    the quoted text (so ``/forget`` can really forget a note).
    """
    hits = relevant_for_listing(text, await recall(ctx, text, horizon))
    recall_text = (OFFLINE_RELATED + "\n" + "\n".join(h.line for h in hits)) if hits else OFFLINE_NOTHING_RELATED
    template = "offline_model_down" if ctx.llm.configured else "offline"
    reply = load_prompt(template).format(recall=recall_text).strip()
    logged = "[offline reply quoting " + (", ".join(h.ref for h in hits) or "nothing") + "]"
    return reply, logged
