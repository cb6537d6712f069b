"""The offline reply: what it lists (only memories with a visible reason to be there) and what it says
about the model (how to configure one when none is, that it is not answering when one is)."""

from __future__ import annotations

from pathlib import Path

from bot.runtime import open_runtime
from graph.conversation.recall import Recalled, relevant_for_listing, shares_a_word
from tests.conftest import ManualClock, RecordingChannel, llm_settings, make_settings, operator_message
from tests.fakes.openai_api import FakeOpenAI


async def test_a_failing_model_is_said_to_be_failing_not_to_be_missing(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.fail(500, times=3)
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm, max_attempts=3, offline_cooldown_s=60))
    async with open_runtime(settings, console=False, clock=ManualClock()) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(operator_message("Acme pays net 30"))
        await rt.dispatcher.handle(operator_message("what does Acme pay?"))  # the breaker is open now
    first, second = (m.text for m in chan.sent)
    for reply in (first, second):
        assert "Offline mode: the model is not answering" in reply and "coo doctor" in reply
        assert "COO_LLM__BASE_URL" not in reply and "restart" not in reply  # a model is configured
    assert "HTTP 500" in first and "Acme pays net 30" in second


async def test_without_a_model_the_reply_says_how_to_configure_one(tmp_path: Path) -> None:
    async with open_runtime(make_settings(tmp_path), console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(operator_message("hello"))
    assert "COO_LLM__BASE_URL" in chan.sent[0].text and "not answering" not in chan.sent[0].text


async def test_offline_free_text_lists_no_unrelated_memories(tmp_path: Path) -> None:
    """With semantic memory, "hello again" came back with "clear" and "the weather is nice" as related
    things: the nearest in meaning of notes that share nothing with it."""
    settings = make_settings(tmp_path, memory={"semantic": True, "ingest_interval_s": 0.05})
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        for text in ("clear", "Acme pays net 30 days", "the weather is nice"):
            await rt.dispatcher.handle(operator_message(text))
        assert rt.ingestor is not None
        await rt.ingestor.wait_idle()
        await rt.dispatcher.handle(operator_message("hello again"))
        await rt.dispatcher.handle(operator_message("what does Acme pay?"))
    unrelated, related = chan.sent[-2].text, chan.sent[-1].text
    assert "Nothing in memory matches that yet." in unrelated
    assert "clear" not in unrelated and "weather" not in unrelated
    assert "Related things you told me:\n" in related and "Acme pays net 30 days" in related
    assert "weather" not in related and "] clear" not in related


def test_a_memory_without_a_shared_word_is_listed_only_above_one_with_a_shared_word() -> None:
    def hits(*texts: str) -> list[Recalled]:
        return [Recalled(text, f"msg-{i}", text) for i, text in enumerate(texts)]

    query = "when does Orbit pay?"
    assert shares_a_word(query, "Orbit Coffee pays on net 45") and shares_a_word("the café", "Café Zürich")
    assert not shares_a_word(query, "the weather is nice")
    listed = relevant_for_listing(query, hits("espresso terms are net 45", "Orbit pays late", "weather is nice"))
    assert [h.text for h in listed] == ["espresso terms are net 45", "Orbit pays late"]
    assert relevant_for_listing(query, hits("clear", "weather is nice")) == []
