"""What a model answered, as our value: the assistant turn (:class:`ModelReply`) and its tool calls, read
from an OpenAI-compatible chat completion and clipped to what solo-coo accepts into a conversation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

# Hard caps on what one model answer may put into the conversation (and so into checkpoints and
# chats), whatever max_tokens the endpoint honoured.
MAX_REPLY_CHARS = 16_000
MAX_TOOL_ARGUMENT_CHARS = 32_000
CLIPPED = "\n[… the answer was cut here: it was longer than solo-coo accepts]"


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model asked for. ``arguments`` is the raw JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ModelReply:
    """The parsed assistant turn."""

    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    cost: float = 0.0
    endpoint: str = "main"
    """Which endpoint answered: ``main`` or ``fallback N``."""
    finish_reason: str = ""
    """Why the model stopped ("stop", "tool_calls", "length" when its output was cut at the limit, ...)."""

    def as_message(self) -> dict[str, Any]:
        """The assistant message in OpenAI chat format (JSON-plain, safe for checkpoints)."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            msg["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        return msg


def parse_reply(response: Any) -> ModelReply:
    """The first choice of a chat completion as a :class:`ModelReply` (without usage: the caller adds it);
    every tool call gets an id of its own, and oversized text or arguments are clipped."""
    if not response.choices:
        return ModelReply("")
    message = response.choices[0].message
    calls: list[ToolCall] = []
    for c in message.tool_calls or []:
        if getattr(c, "function", None) is None:
            continue
        call_id = c.id
        if not call_id or any(call_id == other.id for other in calls):
            # Some OpenAI-compatible endpoints leave ids empty (LM Studio) or repeat them within an answer;
            # tool results are matched to calls by id, so every call of an answer gets an id of its own.
            call_id = f"call_{uuid.uuid4().hex}"
        calls.append(ToolCall(call_id, c.function.name, _clip_arguments(c.function.arguments or "{}")))
    content = message.content or ""
    if len(content) > MAX_REPLY_CHARS:
        content = content[: MAX_REPLY_CHARS - len(CLIPPED)] + CLIPPED
    return ModelReply(content, tuple(calls), finish_reason=str(response.choices[0].finish_reason or ""))


def _clip_arguments(arguments: str) -> str:
    # Oversized arguments are not valid JSON once cut: the tool then reports bad arguments to the model.
    return arguments if len(arguments) <= MAX_TOOL_ARGUMENT_CHARS else arguments[:MAX_TOOL_ARGUMENT_CHARS]
