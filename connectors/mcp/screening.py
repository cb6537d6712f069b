"""What a server writes about its own tools is the server's claim, never an instruction. This screens a
tool's description and schema for text aimed at the model; a flagged tool is never trusted as read-only."""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

_AIMED_AT_THE_MODEL = re.compile(
    r"ignore (all |any )?(the )?(previous|prior|above|earlier|other)|disregard (all |any |the )?(previous|prior|above)"
    r"|always (call|use|run|invoke|send|include|cc|bcc)|you must|before (using|calling) (any|every|other)"
    r"|do not (tell|mention|inform|show)|don'?t (tell|mention|inform|show)|system prompt|<\s*important\s*>"
    r"|(reveal|print|include|share|send|output|read)[^.]{0,40}(api[ _-]?key|password|secret|credential)"
    r"|send (it |them |the [a-z ]+ )?to [^\s]+@|new instructions|instead of the user",
    re.IGNORECASE,
)


def _hidden(char: str) -> bool:
    code = ord(char)
    return (
        0xE0000 <= code <= 0xE007F  # tag characters: invisible text
        or unicodedata.category(char) in ("Cf", "Co", "Cn")  # format (zero-width, bidi), private, unassigned
    ) and char not in "\u200d"  # ZWJ inside emoji is common and harmless on its own


def screen(description: str, schema: dict[str, Any]) -> tuple[str, ...]:
    """Why this tool looks aimed at the model (empty when it does not)."""
    text = f"{description}\n{json.dumps(schema, ensure_ascii=False)}"
    reasons = []
    if any(_hidden(c) for c in text):
        reasons.append("hidden characters in its description")
    found = _AIMED_AT_THE_MODEL.search(text)
    if found:
        reasons.append(f"instructions aimed at the assistant ({found.group(0)[:40]!r})")
    return tuple(reasons)
