"""Closed episodes are summarized by the model in the background, under the budget (I5)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bot.running import Runtime
from bot.runtime import open_runtime
from tests.conftest import RecordingChannel, llm_settings, make_settings, operator_message
from tests.fakes.openai_api import FakeOpenAI

PRICES = {"fake-model": [1000.0, 2000.0], "fake-cheap": [1000.0, 2000.0]}
MAY = datetime(2026, 5, 8, 10, 0, tzinfo=UTC)
JUNE = datetime(2026, 6, 20, 10, 0, tzinfo=UTC)


async def two_episodes(rt: Runtime) -> None:
    """A message in May, then one in June: the May episode closes."""
    may = operator_message("Acme renewed the retainer at 4,000 a month.")
    await rt.dispatcher.handle(replace(may, received_at=MAY))
    await rt.dispatcher.handle(replace(operator_message("Globex asked for a quote on the audit."), received_at=JUNE))
    assert rt.ingestor is not None and rt.memory is not None
    await rt.ingestor.wait_idle()
    await rt.memory.refresh()


async def test_the_cheap_model_summarizes_a_closed_episode_as_data(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    llm = llm_settings(fake_llm, cheap_model="fake-cheap", prices=PRICES)
    settings = make_settings(tmp_path, llm=llm, memory={"semantic": True, "ingest_interval_s": 0.05})
    async with open_runtime(settings, console=False) as rt:
        rt.dispatcher.attach(RecordingChannel("rec"))
        await two_episodes(rt)
        assert rt.memory is not None
        episodes = await rt.memory.episodes(settings.memory.scope)
        calls = await rt.ledger.calls()
    summaries = [r for r in fake_llm.chat_requests if r["model"] == "fake-cheap"]
    assert len(summaries) == 1
    prompt = summaries[0]["messages"][-1]["content"]
    assert "<data>\noperator: Acme renewed the retainer at 4,000 a month.\n</data>" in prompt
    assert "Globex" not in prompt  # the open episode is not summarized yet
    assert [(e.summarizer, e.summary) for e in episodes] == [("model/fake-cheap", f"echo: {prompt}".strip())]
    assert [c.workflow for c in calls if c.model == "fake-cheap"] == ["memory"]


async def test_no_budget_left_keeps_the_extractive_summary_and_calls_nothing(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    llm = llm_settings(fake_llm, cheap_model="fake-cheap", prices=PRICES)
    settings = make_settings(tmp_path, llm=llm, memory={"semantic": True, "ingest_interval_s": 0.05})
    async with open_runtime(settings, console=False) as rt:
        rt.dispatcher.attach(RecordingChannel("rec"))
        await rt.dispatcher.handle(operator_message("/budget set memory 0.01/day", kind="command"))
        await two_episodes(rt)
        assert rt.memory is not None
        episodes = await rt.memory.episodes(settings.memory.scope)
        blocked = await rt.db.events(kind="budget.blocked")
    assert not [r for r in fake_llm.chat_requests if r["model"] == "fake-cheap"]
    assert [e.summarizer for e in episodes] == ["extractive/sumbasic"]
    assert "Acme renewed the retainer" in episodes[0].summary
    assert [b.payload.get("workflow") for b in blocked] == ["memory"]
