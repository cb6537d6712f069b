"""Paid embeddings are metered like model calls (I5): priced, held against the caps, in the ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bot.messages import InboundMessage
from bot.running import Runtime
from bot.runtime import open_runtime
from tests.conftest import RecordingChannel, llm_settings, make_settings
from tests.fakes.openai_api import FakeOpenAI

_n = iter(range(10**6))


def cmd(text: str) -> InboundMessage:
    return InboundMessage("rec", "1001", "telegram:1001", text, kind="command", update_key=f"e:{next(_n)}")


def embedding_requests(llm: FakeOpenAI) -> list[dict[str, object]]:
    return [r for r in llm.requests if r["_path"] == "/v1/embeddings"]


@asynccontextmanager
async def priced_runtime(tmp_path: Path, llm: FakeOpenAI) -> AsyncIterator[tuple[Runtime, RecordingChannel]]:
    """A runtime embedding with the OpenAI-compatible fake, at 1000 per million embedding tokens."""
    settings = make_settings(
        tmp_path,
        llm=llm_settings(llm, prices={"text-embedding-3-small": (1000.0, 0.0)}),
        memory={"semantic": True},
        embeddings={"provider": "openai"},
    )
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        yield rt, chan


async def test_openai_embeddings_are_priced_and_in_the_ledger(tmp_path: Path) -> None:
    async with FakeOpenAI() as llm, priced_runtime(tmp_path, llm) as (rt, chan):
        await rt.dispatcher.handle(cmd("/remember The studio's VAT number is PT509999999"))
        calls = [c for c in await rt.ledger.calls() if c.workflow == "memory"]
    assert embedding_requests(llm) and len(calls) == len(embedding_requests(llm))
    # the fake reports 1 prompt token a request: settled with the reported usage, at the configured price
    assert {(c.model, c.prompt_tokens, c.outcome, c.estimated) for c in calls} == {
        ("text-embedding-3-small", 1, "ok", False)
    }
    assert all(c.cost == 1000.0 / 1_000_000 for c in calls)


async def test_a_cap_stops_embeddings_and_the_note_is_embedded_once_it_fits(tmp_path: Path) -> None:
    async with FakeOpenAI() as llm, priced_runtime(tmp_path, llm) as (rt, chan):
        await rt.dispatcher.handle(cmd("/budget set memory 0/day"))
        await rt.dispatcher.handle(cmd("/remember The studio's VAT number is PT509999999"))
        refused = chan.sent[-1].text
        assert not embedding_requests(llm)  # refused before any paid call
        assert rt.ingestor is not None and rt.ingestor.pending == 1  # kept, not lost
        await rt.dispatcher.handle(cmd("/recall VAT number"))
        recall_refused = chan.sent[-1].text
        await rt.dispatcher.handle(cmd("/budget off memory"))
        await rt.ingestor.flush()
        await rt.dispatcher.handle(cmd("/recall VAT number"))
        found = chan.sent[-1].text
        blocked = [e for e in await rt.db.events() if e.kind == "budget.blocked"]
    assert refused.startswith("Kept as ") and "budget" in refused
    assert "budget" in recall_refused and "rebuilding" not in recall_refused
    assert "PT509999999" in found.splitlines()[0]
    assert blocked and blocked[0].payload["workflow"] == "memory"
