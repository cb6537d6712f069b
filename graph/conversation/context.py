"""Context assembly under a token budget: profile, touched records, recalled memories, a rolling
summary and as many recent turns as fit. Tokens are estimated locally (no tokenizer download)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from graph.models.tokens import estimate_message_tokens, estimate_tokens, message_tokens

# Shares of what is left after the system prompt; turns get the rest.
MEMORY_SHARE = 0.25
RECORDS_SHARE = 0.10
SUMMARY_SHARE = 0.15


@dataclass(frozen=True)
class Assembled:
    """The prompt messages and which older turns fell out of it (to be summarized)."""

    messages: list[dict[str, Any]]
    dropped: list[dict[str, Any]]
    tokens: int


def clip(lines: list[str], budget: int) -> list[str]:
    """The leading lines that fit in ``budget`` tokens."""
    kept, used = [], 0
    for line in lines:
        cost = estimate_tokens(line) + 1
        if used + cost > budget:
            break
        kept.append(line)
        used += cost
    return kept


def clip_text(text: str, budget: int) -> str:
    """``text`` cut to about ``budget`` tokens, keeping its end (the newest part of a summary)."""
    if estimate_tokens(text) <= budget:
        return text
    return "…" + text[-budget * 4 + 1 :]


def fit_turns(
    turns: list[dict[str, Any]], budget: int, costs: Sequence[int] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Newest turns that fit, cut at user-turn boundaries (never splitting a tool exchange).

    ``costs`` are the turns' :func:`message_tokens`, when the caller has them already: each message is
    encoded once whatever the number of cut points tried (the estimate serialises the message).
    """
    costs = [message_tokens(m) for m in turns] if costs is None else costs
    tail = [0] * (len(turns) + 1)  # tail[i]: the estimate of turns[i:]
    for i in range(len(turns) - 1, -1, -1):
        tail[i] = tail[i + 1] + costs[i]
    starts = [i for i, m in enumerate(turns) if m.get("role") == "user"] or [0]
    for start in starts:
        if tail[start] <= budget:
            return list(turns[start:]), list(turns[:start])
    # Even the last turn alone is too big: keep it whole, its request cut to what room is left. The turn in
    # progress must be seen with its own tool calls and results, or the model asks for them again, round
    # after round (many offered tools can leave almost no room).
    current = [dict(m) for m in turns[starts[-1] :]]
    room = budget - tail[starts[-1] + 1] - 24  # 24: JSON framing
    current[0]["content"] = clip_text(str(current[0].get("content", "")), max(16, room))
    return current, list(turns[: starts[-1]])


REPAIR_MARGIN = 64  # tokens kept free for the tool answers ``repair`` may add


_DATA_TAG = re.compile(r"(</?)\s*(data)", re.IGNORECASE)


def as_data(text: str) -> str:
    """``text`` safe inside a ``<data>`` block: it cannot close the block and speak as instructions (in any case:
    ``</DATA>`` and ``</Data >`` are tags to a model too)."""
    return _DATA_TAG.sub(lambda m: m.group(1) + " " + m.group(2), text)


def assemble(
    system: str,
    context_template: str,
    summary: str,
    records: list[str],
    memories: list[str],
    turns: list[dict[str, Any]],
    budget: int,
    repair: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] = list,
    profile: str = "",
) -> Assembled:
    """Build the prompt within ``budget`` tokens (estimated). ``dropped`` are original turns, in order.

    The system message holds only our instructions. Everything the model or outside content may
    have written (profile facts, the summary, records, recalled memories) goes in a separate
    message as delimited data, never as instructions (prompt injection); empty parts are left out.
    """
    free = budget - estimate_tokens(system) - estimate_tokens(context_template) - estimate_tokens(profile) - 16
    sections = [
        ("business profile", profile),
        ("summary of the earlier conversation", clip_text(summary, int(free * SUMMARY_SHARE)) if summary else ""),
        ("records that may matter", "\n".join(clip(records, int(free * RECORDS_SHARE)))),
        ("recalled from memory, each with its date and source", "\n".join(clip(memories, int(free * MEMORY_SHARE)))),
    ]
    data = "\n\n".join(f'<data source="{name}">\n{as_data(text)}\n</data>' for name, text in sections if text)
    head = [{"role": "system", "content": system}]
    if data:
        head.append({"role": "user", "content": context_template.strip() + "\n\n" + data})
    head_tokens = estimate_message_tokens(head)
    costs = [message_tokens(m) for m in turns]
    kept, dropped = fit_turns(turns, budget - head_tokens - REPAIR_MARGIN, costs)
    repaired = repair(kept)
    # The turns are estimated once: what repair kept as it was (the same object: turns is alive, so no other
    # object has its id) costs what it did; only messages it added or changed are encoded again.
    known = {id(m): cost for m, cost in zip(turns, costs, strict=True)}
    tokens = head_tokens + sum(known[id(m)] if id(m) in known else message_tokens(m) for m in repaired)
    return Assembled(head + repaired, dropped, tokens)


def render_turns(turns: list[dict[str, Any]]) -> str:
    """Turns as plain lines for the summarizer (tool exchanges reduced to their text)."""
    lines = []
    for m in turns:
        if m.get("role") in ("user", "assistant") and m.get("content"):
            lines.append(f"{m['role']}: {str(m['content'])[:1000]}")
    return as_data("\n".join(lines))


def extractive_summary(summary: str, turns: list[dict[str, Any]], budget_tokens: int) -> str:
    """Without a model: keep what the operator said (facts come from them), newest last, within budget."""
    said = [f"- {str(m['content'])[:300]}" for m in turns if m.get("role") == "user" and m.get("content")]
    return clip_text("\n".join(filter(None, [summary, *said])), budget_tokens)
