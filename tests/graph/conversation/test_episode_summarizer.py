"""Closed episodes are summarized by the model in the background, under the budget (I5)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.running import Runtime
from bot.runtime import open_runtime
from graph.conversation.episode_summarizer import MAX_EPISODE_TOKENS, ModelSummarizer
from graph.errors import ModelUnavailable
from graph.models.llm import estimate_tokens
from tests.conftest import RecordingChannel, llm_settings, make_settings, operator_message
from tests.fakes.openai_api import FakeOpenAI, Scripted
from tests.graph.parts import goal_parts

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


# -- the summarizer built on its own: the real model client and cost ledger on SQLite, the fake model -------------
async def test_the_summarizer_asks_its_model_under_the_memory_workflow(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.reply("Acme renewed at 4,000 a month.")
    async with goal_parts(tmp_path, fake_llm) as parts:
        cheap, main = ModelSummarizer(parts.llm, "fake-cheap"), ModelSummarizer(parts.llm, None)
        summary = await cheap(["operator: Acme renewed the retainer", "coo: noted"])
        calls = await parts.stores.ledger.calls()
    assert summary == "Acme renewed at 4,000 a month."
    assert (cheap.name, main.name) == ("model/fake-cheap", "model/fake-model")
    [request] = fake_llm.chat_requests
    assert request["model"] == "fake-cheap" and "Acme renewed the retainer" in request["messages"][-1]["content"]
    assert [(c.workflow, c.model, c.outcome) for c in calls] == [("memory", "fake-cheap", "ok")]


async def test_a_long_episode_is_cut_to_its_newest_part(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    lines = [f"operator: line {i} " + "about the quarterly numbers " * 5 for i in range(2_000)]
    async with goal_parts(tmp_path, fake_llm) as parts:
        await ModelSummarizer(parts.llm, None)(lines)
    sent = fake_llm.chat_requests[0]["messages"][-1]["content"]
    assert "line 1999 " in sent and "line 0 " not in sent
    assert estimate_tokens(sent) < MAX_EPISODE_TOKENS + 500  # the prompt's own words on top of the cut episode


async def test_a_failed_summary_call_raises_so_the_extractive_summary_stays(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    fake_llm.default = Scripted(status=400, error_message="the model refused the request")
    async with goal_parts(tmp_path, fake_llm) as parts:
        with pytest.raises(ModelUnavailable):
            await ModelSummarizer(parts.llm, None)(["operator: Acme renewed"])
