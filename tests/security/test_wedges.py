"""Ways to stall, flood or wedge the bot: the edit trap, malformed updates, long input, huge replies."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.messages import InboundMessage
from bot.runtime import open_runtime
from graph.contexts import Contexts
from graph.conversation.prompt import recall
from graph.conversation.recall import MAX_RECALL_QUERY_CHARS
from graph.conversation.state import GraphContext
from memory.semantic.api import Hit
from tests.conftest import RecordingChannel, llm_settings, make_settings, operator_message
from tests.fakes.openai_api import FakeOpenAI, Scripted
from tests.fakes.smtp_server import SMTPServer
from tests.fakes.telegram_api import FakeTelegram


def button(message: object, label: str) -> str:
    return next(b.data for b in message.buttons if b.label == label)  # type: ignore[attr-defined]


async def test_a_decided_card_ends_its_edit_request(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    with SMTPServer() as smtp:
        settings = make_settings(tmp_path, llm=llm_settings(fake_llm), smtp=smtp.settings())
        async with open_runtime(settings, console=False) as rt:
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            await rt.dispatcher.handle(operator_message("/email ana@example.org Hi | Hello", kind="command"))
            card = next(m for m in chan.sent if m.buttons)
            await rt.dispatcher.handle(operator_message("", kind="callback", data=button(card, "Edit")))
            await rt.dispatcher.handle(operator_message("", kind="callback", data=button(card, "Reject")))
            await rt.dispatcher.handle(operator_message("what is on today?"))
        async with open_runtime(settings, console=False) as rt:  # and after a restart
            chan2 = RecordingChannel("rec")
            rt.dispatcher.attach(chan2)
            await rt.dispatcher.handle(operator_message("and tomorrow?"))
    assert chan.sent[-1].text == "echo: what is on today?"  # before: "That card was decided meanwhile", forever
    assert chan2.sent[-1].text == "echo: and tomorrow?"


async def test_a_malformed_update_does_not_stop_the_bot(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    async with FakeTelegram("1:T") as tg:
        telegram = {"token": "1:T", "api_base_url": tg.api_root, "poll_timeout_s": 0.5}
        settings = make_settings(tmp_path, telegram=telegram, llm=llm_settings(fake_llm))
        async with open_runtime(settings, console=False):
            tg.push_raw({"poll_answer": {"poll_id": "p1", "option_ids": [0]}})  # fields PTB requires are missing
            tg.push_message(1001, 1001, "still there?")
            await tg.wait_for(lambda c: c.method == "sendMessage", 1, timeout=10)
            polls = len([c for c in tg.calls if c.method == "getUpdates"])
    assert [c.params["text"] for c in tg.calls if c.method == "sendMessage"] == ["echo: still there?"]
    assert polls < 20  # no retry storm on the bad update


async def test_a_message_too_long_for_the_model_gets_a_clear_answer_and_no_call(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm))
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        long = operator_message("word " * 8_000)  # 40,000 characters
        other = InboundMessage("rec", "-100", "telegram:1001", "short one", update_key="other:1")
        await asyncio.gather(rt.dispatcher.handle(long), rt.dispatcher.handle(other))
    texts = {m.chat_id: m.text for m in chan.sent}
    assert "Please send it shorter or in parts." in texts["1001"] and "COO_LLM__CONTEXT_BUDGET" in texts["1001"]
    assert texts["-100"] == "echo: short one"
    assert [r["messages"][-1]["content"] for r in fake_llm.chat_requests] == ["short one"]


class _RecordingMemory:
    """A semantic memory that records what it is asked (a real object, not a mock of ours)."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    async def recall(self, query: str, k: int = 10, scope: str = "default") -> list[Hit]:
        self.queries.append(query)
        return []


async def test_recall_embeds_a_capped_query(tmp_path: Path) -> None:
    from graph.conversation.tools import ToolBox
    from graph.models.llm import LLMClient
    from graph.settings import LLMSettings
    from graph.spend.pricing import PriceTable
    from memory.db import open_database
    from memory.ledger import CostLedger

    memory = _RecordingMemory()
    async with open_database(tmp_path) as db:
        llm = LLMClient(LLMSettings(), CostLedger(db), PriceTable({}))
        ctx = GraphContext(Contexts(db, "UTC", "USD", memory=memory), llm, ToolBox(), "s", 4)  # type: ignore[arg-type]
        await recall(ctx, "x" * 89_000)
    assert len(memory.queries) == 1 and len(memory.queries[0]) == MAX_RECALL_QUERY_CHARS


async def test_a_huge_model_reply_is_capped_in_chat_and_in_checkpoints(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.script.append(Scripted(content="spam " * 1_000_000))  # 5 MB
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm, timeout_s=30))
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(operator_message("say something long"))
    assert len(chan.sent) == 1 and len(chan.sent[0].text) <= 16_000
    assert chan.sent[0].text.endswith("it was longer than solo-coo accepts]")
    assert (tmp_path / "checkpoints.sqlite").stat().st_size < 2_000_000  # before: 39 MB of checkpoints
