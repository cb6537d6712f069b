"""Coordinator nodes: plain async functions returning partial state."""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime

from graph.errors import ModelUnavailable
from graph.state import CooState, GraphContext
from graph.tools import ToolContext, render_time, search_messages
from memory.db import utcnow
from prompts import load_prompt


async def assemble_context(state: CooState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    """System prompt (profile, time) plus the recent turns, cut at a user-turn boundary."""
    ctx = runtime.context
    system = load_prompt("system").format(
        profile=load_prompt("profile_placeholder").strip(),
        now=render_time(utcnow(), ctx.timezone),
        timezone=ctx.timezone,
    )
    return {
        "context": [
            {"role": "system", "content": system},
            *recent_turns(state.get("messages", []), ctx.recent_turns),
        ]
    }


def recent_turns(messages: list[dict[str, Any]], turns: int) -> list[dict[str, Any]]:
    """The messages of the last ``turns`` user turns, never splitting a tool exchange."""
    starts = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if len(starts) <= turns:
        return list(messages)
    return list(messages[starts[-turns] :])


async def call_model(state: CooState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    """Ask the model; on an unreachable model fall back to offline mode (telling the operator once)."""
    ctx = runtime.context
    last_user = _last_user_text(state.get("messages", []))
    if not ctx.llm.available():
        return {"reply": await offline_reply(ctx, last_user), "offline": True}
    rounds = state.get("tool_rounds", 0)
    tools = ctx.tools.schemas() if rounds < ctx.max_tool_rounds else []
    try:
        reply = await ctx.llm.chat(state.get("context", []), tools, session=ctx.session)
    except ModelUnavailable as exc:
        text = await offline_reply(ctx, last_user)
        if ctx.llm.take_outage_notice():
            text = load_prompt("model_down").format(reason=str(exc)).strip() + "\n\n" + text
        return {"reply": text, "offline": True}
    message = reply.as_message()
    if not tools and message.pop("tool_calls", None) and not message["content"]:
        # A model that keeps calling tools after they were withdrawn gets no further round.
        message["content"] = "I stopped after several tool rounds without reaching an answer."
    return {"messages": [message], "offline": False}


def route_after_model(state: CooState) -> Literal["run_tools", "finish"]:
    """Tools requested -> run them; otherwise finish."""
    if state.get("offline"):
        return "finish"
    messages = state.get("messages", [])
    if messages and messages[-1].get("role") == "assistant" and messages[-1].get("tool_calls"):
        return "run_tools"
    return "finish"


async def run_tools(state: CooState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    """Run the safe tools the model asked for; results go back to the model as data."""
    ctx = runtime.context
    tool_ctx = ToolContext(db=ctx.db, session=ctx.session, timezone=ctx.timezone)
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
            {"role": "tool", "tool_call_id": call.get("id", ""), "content": f"<data>\n{output}\n</data>"}
        )
    return {"messages": results, "tool_rounds": state.get("tool_rounds", 0) + 1}


async def finish(state: CooState) -> dict[str, Any]:
    """The reply is the model's last text (offline replies are already set)."""
    if state.get("offline"):
        return {}
    messages = state.get("messages", [])
    text = str(messages[-1].get("content") or "").strip() if messages else ""
    return {"reply": text or "(the model returned an empty answer)"}


async def offline_reply(ctx: GraphContext, text: str) -> str:
    """What the operator gets without a model: matching earlier messages and how to add a model."""
    hits = await search_messages(ctx.db, text, 6, kinds=("message.in",)) if text.strip() else []
    hits = [h for h in hits if not h.endswith(f"operator: {text[:300]}")][:5]
    recall = (
        ("Related things you told me:\n" + "\n".join(hits)) if hits else "Nothing in memory matches that yet."
    )
    return load_prompt("offline").format(recall=recall).strip()


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    return ""
