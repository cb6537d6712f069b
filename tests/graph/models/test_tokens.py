"""Token estimates (graph/models/tokens.py), what a prompt is reserved at before its call (I5): text by its
characters, messages as the JSON that is sent, tool schemas counted once per schema object, exactly as
messages are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai

from graph.models.llm import LLMClient
from graph.models.tokens import estimate_message_tokens, estimate_tokens, estimate_tool_tokens
from graph.settings import LLMSettings
from graph.spend.pricing import PriceTable
from memory.db import open_database
from memory.ledger import CostLedger
from tests.conftest import llm_settings
from tests.fakes.openai_api import FakeOpenAI


def _tool(name: str, description: str) -> dict[str, Any]:
    params = {"type": "object", "properties": {"to": {"type": "string", "description": "Recipient"}}}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": params}}


def test_tool_estimate_equals_the_message_estimate_on_every_call() -> None:
    tools = [_tool("send_email", "Send an email."), _tool("create_invoice", "Draft a Stripe invoice " * 20)]
    expected = estimate_message_tokens(tools)
    assert expected > 0
    assert [estimate_tool_tokens(tools) for _ in range(3)] == [expected] * 3
    assert estimate_tool_tokens([]) == 0


def test_each_schema_object_is_priced_for_itself() -> None:
    short, long = _tool("a", "x"), _tool("a", "x" * 4_000)
    assert estimate_tool_tokens([short]) == estimate_message_tokens([short])
    # Another object with other content is not taken for one already priced.
    assert estimate_tool_tokens([long]) == estimate_message_tokens([long]) > estimate_tool_tokens([short])
    assert estimate_tool_tokens([short, long, short]) == estimate_message_tokens([short, long, short])


def test_the_token_estimate_does_not_undercount_non_latin_text() -> None:
    """Tokenizers cut Chinese or Japanese into about a token a character; the held estimate must cover it (I5)."""
    assert estimate_tokens("a" * 400) == 100  # English-like text: ~4 characters a token, as before
    assert estimate_tokens("请把报价单发给客户" * 100) >= 900
    assert estimate_tokens("Invoice for 東京 office") == (len("Invoice for  office") + 3) // 4 + 2
    assert estimate_tokens("") == 1


def test_a_message_is_counted_as_the_json_sent_with_four_tokens_of_framing() -> None:
    """Non-Latin text is counted as it is sent (UTF-8 JSON), a token a character, never as escapes."""
    tokyo = {"role": "user", "content": "東京" * 50}
    # '{"role": "user", "content": ""}' is 31 ASCII characters: 8 tokens; then 100 characters, 4 of framing.
    assert estimate_message_tokens([tokyo]) == 8 + 100 + 4
    assert estimate_message_tokens([tokyo, tokyo]) == 2 * (8 + 100 + 4) and estimate_message_tokens([]) == 0


def test_an_assistant_turn_without_text_is_counted_by_its_tool_calls() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "send_email", "arguments": '{"to": "a@b.c"}'}}
    bare = {"role": "assistant", "content": None}
    with_call = {**bare, "tool_calls": [call]}
    assert estimate_message_tokens([bare]) > 4  # no text: still its framing and its JSON
    assert estimate_message_tokens([with_call]) > estimate_message_tokens([bare]) + 10


class _Counted(dict[str, Any]):
    """A chat message that counts how often it is serialised (json reads a dict subclass through ``items``)."""

    encoded = 0

    def items(self):  # type: ignore[override]
        _Counted.encoded += 1
        return super().items()


async def test_a_calls_prompt_is_estimated_once_for_its_reservation_usage_and_cut_check(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    """The client serialises the prompt once to estimate it, on top of what the SDK does to send it: the
    reservation, the usage fallback and the prompt-cut check share one estimate."""
    messages = [_Counted(role="user", content="hello " * 400)]
    raw = openai.AsyncOpenAI(base_url=fake_llm.base_url, api_key=fake_llm.api_key, max_retries=0)
    _Counted.encoded = 0
    await raw.chat.completions.create(model="fake-model", messages=messages)  # type: ignore[arg-type]
    by_sdk = _Counted.encoded
    await raw.close()
    async with open_database(tmp_path) as db:
        ledger = CostLedger(db)
        await ledger.setup()
        client = LLMClient(LLMSettings(**llm_settings(fake_llm)), ledger, PriceTable({}))
        try:
            _Counted.encoded = 0
            await client.chat(messages, session="rec:1001")
        finally:
            await client.close()
    assert _Counted.encoded == by_sdk + 1
