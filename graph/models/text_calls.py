"""Tool calls written as text. Small models served through Ollama, llama.cpp or vLLM often answer with the call in
the content (``{"name": "find_contact", "parameters": {...}}``, in a code fence, after ``<|python_tag|>`` or inside
``<tool_call>`` tags) instead of in ``tool_calls``. Such a call becomes a real one when it names a tool that was
offered; anything else stays text."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterator
from typing import Any

from graph.models.llm import ModelReply, ToolCall

_DECODER = json.JSONDecoder()
_ARGUMENT_KEYS = ("arguments", "parameters", "args", "input")


def text_tool_calls(content: str, offered: Collection[str]) -> tuple[ToolCall, ...]:
    """The calls of offered tools written in ``content`` (none when it holds none, or names another tool)."""
    if not content or not offered or "{" not in content:
        return ()
    calls: list[ToolCall] = []
    for found in _json_values(content):
        for item in found if isinstance(found, list) else [found]:
            call = _as_call(item, offered)
            if call is not None:
                calls.append(call)
    return tuple(calls)


def with_text_calls(reply: ModelReply, offered: Collection[str]) -> ModelReply:
    """``reply`` with the calls written in its text made real (its text then goes: it was the call)."""
    if reply.tool_calls:
        return reply
    calls = text_tool_calls(reply.content, offered)
    if not calls:
        return reply
    return ModelReply(
        "",
        calls,
        reply.prompt_tokens,
        reply.completion_tokens,
        reply.model,
        reply.cost,
        "tool_calls" if reply.finish_reason == "stop" else reply.finish_reason,
    )


def _json_values(text: str) -> Iterator[Any]:
    """Every top-level JSON object or array in ``text``, left to right."""
    index = 0
    while index < len(text):
        starts = [i for i in (text.find("{", index), text.find("[", index)) if i >= 0]
        if not starts:
            return
        start = min(starts)
        try:
            value, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            index = start + 1
            continue
        yield value
        index = end


def _as_call(item: Any, offered: Collection[str]) -> ToolCall | None:
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("function"), dict):  # {"type": "function", "function": {"name": ..., "arguments": ...}}
        item = item["function"]
    name = item.get("name")
    if not isinstance(name, str) or name not in offered:
        return None
    args: Any = next((item[key] for key in _ARGUMENT_KEYS if key in item), {})
    if isinstance(args, str):
        arguments = args
    elif isinstance(args, dict):
        arguments = json.dumps(args, ensure_ascii=False)
    else:
        return None
    return ToolCall(f"call_{uuid.uuid4().hex}", name, arguments)
