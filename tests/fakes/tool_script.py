"""A responder for the fake model that calls tools on request (benchmarks of tool paths):

- a user message ``call <tool name> <JSON arguments>`` is answered with that one tool call;
- a request whose last message is a tool result is answered ``done: <first 40 characters of it>``;
- anything else: no answer from here (the fake echoes).
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.openai_api import Scripted


def tool_script(body: dict[str, Any]) -> Scripted | None:
    """The answer to one chat request, or None to let the fake echo."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        return Scripted(content=f"done: {str(last.get('content', ''))[:40]}")
    text = str(last.get("content") or "") if last.get("role") == "user" else ""
    if text.startswith("call "):
        name, _, raw = text[5:].partition(" ")
        return Scripted(tool_calls=[(name, json.loads(raw or "{}"))])
    return None
