"""The prompt of a turn, within its token budget: the system text and the operator's profile, the contacts the
request names, the memories recalled for it (semantic memory, else the message log), the rolling summary, the
newest turns and the tools offered. Turns that no longer fit are folded into the summary."""

from __future__ import annotations

import logging
from typing import Any
from zoneinfo import ZoneInfo

from graph.conversation.context import Assembled, as_data, assemble, clip_text, extractive_summary, render_turns
from graph.conversation.recall import (
    PROMPT_MEMORIES,
    Horizon,
    Recalled,
    lexical_recall,
    query_of,
    semantic_recall,
)
from graph.conversation.record_tools import render_contact
from graph.conversation.schema_text import CleanTools
from graph.conversation.state import CooState, GraphContext, drop_oldest
from graph.conversation.tools import render_time
from graph.errors import ModelUnavailable
from graph.models.llm import estimate_tool_tokens
from graph.spend.budget import BudgetExceeded
from prompts import load_prompt

log = logging.getLogger(__name__)


async def assemble_context(state: CooState, ctx: GraphContext) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The prompt (profile, touched records, recalled memories, rolling summary and the newest turns,
    within budget) and the state updates it implies.

    Turns that no longer fit are folded into the summary (progressive summarization) and dropped
    from the state; facts stay in the event log, records and semantic memory, so nothing the
    operator said is lost.
    """
    profile = await ctx.profile.get() if ctx.profile else None
    instructions = profile.instructions if profile else ""
    now = ctx.clock()
    system = load_prompt("system").format(
        instructions=load_prompt("operator_instructions").format(instructions=instructions) if instructions else "",
        now=render_time(now, ctx.timezone),
        weekday=now.astimezone(ZoneInfo(ctx.timezone)).strftime("%A"),
        timezone=ctx.timezone,
        currency=ctx.currency,
    )
    facts = profile.render_facts() if profile else ""
    messages = state.get("messages", [])
    done = state.get("summarized", 0)
    request = last_user_text(messages)
    horizon = Horizon.from_state(state.get("horizon"))
    memories = [hit.line for hit in await prompt_recall(ctx, request, horizon)]
    records = await touched_records(ctx, request)
    summary = state.get("summary", "")
    template = load_prompt("context")
    # The tool schemas travel with every call: they count against the budget too.
    budget = ctx.context_budget - estimate_tool_tokens(offered_tools(ctx))

    def build(summary: str, turns: list[dict[str, Any]], budget: int) -> Assembled:
        return assemble(system, template, summary, records, memories, turns, budget, repair_tool_history, facts)

    built = build(summary, messages[done:], budget)
    if not built.dropped:
        # Older checkpoints kept folded turns in the state: drop them now.
        return built.messages, ({"messages": [drop_oldest(done)], "summarized": 0} if done else {})
    # Fold generously (as if the budget were 40 % smaller), so the next fold is many turns away
    # instead of one summary call on every turn.
    shrunk = build(summary, messages[done:], int(budget * FOLD_TARGET))
    summary = await summarize(ctx, summary, shrunk.dropped)
    done += len(shrunk.dropped)
    built = build(summary, messages[done:], budget)
    dropped = done + len(built.dropped)
    return built.messages, {"messages": [drop_oldest(dropped)], "summary": summary, "summarized": 0}


FOLD_TARGET = 0.6


# The action kinds' schemas come from connectors as pydantic writes them ($defs, titles): the model is offered them
# clean (an invoice's lines inline, fields named), each cleaned once.
_CLEAN_ACTIONS = CleanTools()


def offered_tools(ctx: GraphContext) -> list[dict[str, Any]]:
    """The tool schemas offered to the model."""
    actions = _CLEAN_ACTIONS(ctx.approvals.registry.tool_schemas()) if ctx.approvals else []
    return [*ctx.tools.schemas(), *actions]


async def prompt_recall(ctx: GraphContext, request: str, horizon: Horizon | None = None) -> list[Recalled]:
    """The memories a prompt shows: the conversation's prepared recall (see ``graph.conversation.recall``), or,
    without one, a recall on the spot; only what was said before ``horizon`` (the message answered)."""
    if ctx.recall is not None:
        try:
            return await ctx.recall.for_prompt(ctx.session, request, horizon)
        except Exception:
            log.warning("recall failed in %s; the prompt goes without memories", ctx.session, exc_info=True)
            return []
    return await recall(ctx, request, horizon)


async def recall(ctx: GraphContext, request: str, horizon: Horizon | None = None) -> list[Recalled]:
    """Top memories for the request said before ``horizon``, as data lines with source and date (waits
    for the embedder).

    Semantic memory first; when it fails (e.g. its files are gone) the message log's full-text
    index answers instead, so a broken memory never breaks the conversation.
    """
    query = query_of(request)
    if not query:
        return []
    if ctx.memory is not None:
        try:
            found = await semantic_recall(ctx.memory, query, ctx.scope, exclude=request, horizon=horizon)
            return found[:PROMPT_MEMORIES]
        except ValueError:
            return []
        except Exception:
            log.warning("semantic memory failed in %s; recalling from the message log", ctx.session, exc_info=True)
    return (await lexical_recall(ctx.db, query, exclude=request, horizon=horizon))[:PROMPT_MEMORIES]


async def touched_records(ctx: GraphContext, request: str) -> list[str]:
    """Contacts whose name appears in the request."""
    if ctx.records is None:
        return []
    contacts = await ctx.contacts.current() if ctx.contacts is not None else await ctx.records.all("contact")
    text = request.lower()
    lines = []
    for record in contacts:
        contact = record.data
        names = [getattr(contact, "name", "")] + [getattr(contact, "name", "").split(" ")[0]]
        if any(n and len(n) >= 3 and n.lower() in text for n in names):
            lines.append(render_contact(record))
    return lines[:5]


async def summarize(ctx: GraphContext, summary: str, dropped: list[dict[str, Any]]) -> str:
    """Fold turns into the summary: with the model when it can, otherwise extractively."""
    limit = int(ctx.context_budget * 0.15)
    if ctx.llm.available():
        prompt = load_prompt("summarize").format(summary=as_data(summary) or "(none)", turns=render_turns(dropped))
        try:
            reply = await ctx.llm.chat([{"role": "user", "content": prompt}], session=ctx.session, workflow="summary")
        except (ModelUnavailable, BudgetExceeded):
            pass
        else:
            if reply.content.strip():
                return clip_text(reply.content.strip(), limit)
    return extractive_summary(summary, dropped, limit)


def repair_tool_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give every tool call an answer. A turn abandoned while its card waited (the operator wrote
    something else meanwhile) would otherwise leave a call unanswered, which endpoints reject."""
    out: list[dict[str, Any]] = []
    open_ids: list[str] = []
    for message in messages:
        if message.get("role") != "tool" and open_ids:
            out += [{"role": "tool", "tool_call_id": i, "content": PENDING_RESULT} for i in open_ids]
            open_ids = []
        out.append(message)
        if message.get("role") == "assistant":
            open_ids = [c.get("id", "") for c in message.get("tool_calls") or []]
        elif message.get("role") == "tool" and message.get("tool_call_id") in open_ids:
            open_ids.remove(message["tool_call_id"])
    out += [{"role": "tool", "tool_call_id": i, "content": PENDING_RESULT} for i in open_ids]
    return out


PENDING_RESULT = "(no result: the approval card was left waiting; see the card for its outcome)"


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """What the operator said last."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    return ""
