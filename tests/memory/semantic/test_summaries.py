"""Episode summaries stored in a real LanceDB store: written, rewritten by a model, dropped when stale, caught up."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from memory.semantic.filters import is_
from memory.semantic.store import SemanticStore
from memory.semantic.summaries import EpisodeSummaries
from memory.semantic.tables import notes_table
from tests.memory.semantic.test_semantic import HashEmbedder
from tests.memory.semantic.test_tables import unit

START = datetime(2024, 5, 8, 9, 0, tzinfo=UTC)
NOW = datetime(2024, 6, 1, tzinfo=UTC)
EMBEDDER = HashEmbedder()


class GatedSummarizer:
    """A model stand-in: its first call waits for ``release``; each call returns which call it was."""

    name = "test/gated"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.calls = 0

    async def __call__(self, lines: Sequence[str]) -> str:
        self.calls += 1
        call = self.calls
        if call == 1:
            self.started.set()
            await self.release.wait()
        return f"model summary {call} of {len(lines)} turns"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SemanticStore]:
    store = await SemanticStore.open(tmp_path / "lancedb", 16, EMBEDDER.name, auto_refresh=False)
    yield store
    await store.close()


async def write_turns(store: SemanticStore, episode: str, texts: list[str], first_seq: int = 0) -> None:
    rows = [
        unit(f"{episode}-{i}", text, scope="conv", at=START + timedelta(minutes=i), episode=episode,
             speaker=text.split(":", 1)[0], seq=first_seq + i)
        for i, text in enumerate(texts)
    ]  # fmt: skip
    await store.add(notes_table(rows, await EMBEDDER.embed_passages(texts), 16, EMBEDDER.name))


def summaries(store: SemanticStore, summarizer: GatedSummarizer | None = None) -> EpisodeSummaries:
    return EpisodeSummaries(store, summarizer, asyncio.Lock(), lambda: NOW)


async def test_a_closed_episode_gets_its_extractive_summary_with_its_turns_and_dates(store: SemanticStore) -> None:
    await write_turns(store, "ep1", ["Ana: The Acme retainer is renewed for a year.", "Bo: ok"])
    episodes = summaries(store)
    lines, start, end = await episodes.lines("conv", "ep1")
    assert lines == ["Ana: The Acme retainer is renewed for a year.", "Bo: ok"]
    assert (start, end) == (START, START + timedelta(minutes=1))
    await episodes.summarize("conv", "ep1", lines, start, end)
    [episode] = await episodes.listed("conv")
    assert (episode.id, episode.turns, episode.summarizer) == ("ep1", 2, "extractive/sumbasic")
    assert episode.summary == "Ana: The Acme retainer is renewed for a year."
    assert await episodes.listed("other") == []


async def test_an_unknown_episode_has_no_lines_and_a_blank_scope_is_refused(store: SemanticStore) -> None:
    episodes = summaries(store)
    assert await episodes.lines("conv", "nope") == ([], NOW, NOW)
    with pytest.raises(ValueError, match="scope"):
        await episodes.listed(" ")


async def test_a_model_summary_started_before_a_forget_is_dropped(store: SemanticStore) -> None:
    await write_turns(store, "ep1", ["Ana: The Acme retainer is renewed.", "Ana: Globex wants a demo on Friday."])
    model = GatedSummarizer()
    episodes = summaries(store, model)
    lines, start, end = await episodes.lines("conv", "ep1")
    await episodes.summarize("conv", "ep1", lines, start, end)
    await model.started.wait()  # the first model summary is under way, made from both turns
    await store.delete(is_("ref", "ep1-0"))
    await episodes.rewrite("conv", {"ep1"})  # the second is made from what is left, and not held back
    model.release.set()
    await episodes.settled()
    [episode] = await episodes.listed("conv")
    assert (episode.summarizer, episode.summary, episode.turns) == ("test/gated", "model summary 2 of 1 turns", 1)


async def test_an_episode_whose_every_turn_is_forgotten_loses_its_summary(store: SemanticStore) -> None:
    await write_turns(store, "ep1", ["Ana: The Acme retainer is renewed."])
    episodes = summaries(store)
    await episodes.summarize("conv", "ep1", *await episodes.lines("conv", "ep1"))
    await store.delete(is_("ref", "ep1-0"))
    await episodes.rewrite("conv", {"ep1"})
    assert await episodes.listed("conv") == []


async def test_a_summary_lost_to_a_storage_fault_is_written_by_the_catch_up(
    store: SemanticStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await write_turns(store, "ep1", ["Ana: The Acme retainer is renewed."])
    await write_turns(store, "ep2", ["Bo: Globex wants a demo on Friday."], first_seq=1)  # the open episode
    episodes = summaries(store)
    lines = await episodes.lines("conv", "ep1")
    moved = tmp_path / "episodes.lance.away"
    shutil.move(tmp_path / "lancedb" / "episodes.lance", moved)
    with caplog.at_level(logging.ERROR, logger="memory.semantic.summaries"):
        await episodes.summarize("conv", "ep1", *lines)  # never raises: the turns are stored already
    assert any("maintain() will retry" in r.getMessage() for r in caplog.records)
    shutil.move(moved, tmp_path / "lancedb" / "episodes.lance")
    assert await episodes.listed("conv") == []
    await episodes.catch_up()
    assert [e.id for e in await episodes.listed("conv")] == ["ep1"]  # the open episode waits until it closes
