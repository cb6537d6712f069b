"""Local token estimates (no tokenizer download): what a prompt is reserved at before its call (I5)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def estimate_tokens(text: str) -> int:
    """A local token estimate (no tokenizer download): ~4 ASCII characters a token, and a token for
    every other character, at least 1.

    It must not fall short (I5 holds the estimate): tokenizers cut English into ~4-character pieces,
    but Chinese or Japanese into about one token a character, which ~4 a token would undercount 4×.
    """
    if text.isascii():  # the usual case, without copying the text
        return max(1, (len(text) + 3) // 4)
    ascii_chars = len(text.encode("ascii", "ignore"))
    return max(1, (ascii_chars + 3) // 4 + len(text) - ascii_chars)


def estimate_message_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """Estimated prompt tokens for a list of chat messages (4 tokens of framing each)."""
    return sum(message_tokens(m) for m in messages)


def message_tokens(message: dict[str, Any]) -> int:
    """One message's share of :func:`estimate_message_tokens` (a list's estimate is the sum of these)."""
    return 4 + estimate_tokens(json.dumps(message, ensure_ascii=False))


_TOOL_COSTS: dict[int, tuple[dict[str, Any], int]] = {}
_MAX_TOOL_COSTS = 1_024


def estimate_tool_tokens(tools: Sequence[dict[str, Any]]) -> int:
    """Estimated prompt tokens of tool schemas, as :func:`estimate_message_tokens` counts them.

    Tool schemas are built once and shared, never changed (``ToolSet.schemas``,
    ``Registry.tool_schemas``), so each one's cost is kept by identity: encoding them anew twice a
    turn was ~5 % of the event loop's CPU in a burst (``python -m bench.deployed --profile DIR
    --profile-phase burst``). The entry holds the schema itself, so its id cannot be reused.
    """
    total = 0
    for tool in tools:
        known = _TOOL_COSTS.get(id(tool))
        if known is None or known[0] is not tool:
            known = (tool, estimate_message_tokens([tool]))
            if len(_TOOL_COSTS) < _MAX_TOOL_COSTS:
                _TOOL_COSTS[id(tool)] = known
        total += known[1]
    return total
