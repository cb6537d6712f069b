"""How a batch of notes becomes rows: numbering, noise, episodes, reply context, chunks, refs stored once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from memory.semantic import indexing, turns
from memory.semantic.episodes import EPISODE_GAP
from memory.semantic.notes import Note, clean
from memory.semantic.store import SemanticStore
from memory.semantic.summaries import EpisodeSummaries
from memory.semantic.tables import notes_table, quiet_table
from tests.memory.semantic.test_semantic import HashEmbedder

T0 = datetime(2024, 5, 8, 9, 0, tzinfo=UTC)
EMBEDDER = HashEmbedder()


def rows(*notes: tuple[str, datetime, str]) -> list[dict[str, Any]]:
    return [clean(Note(text, at=at, scope="conv", ref=ref), i) for i, (text, at, ref) in enumerate(notes)]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SemanticStore]:
    store = await SemanticStore.open(tmp_path / "lancedb", 16, EMBEDDER.name, auto_refresh=False)
    yield store
    await store.close()


async def write(store: SemanticStore, batch: indexing.Batch) -> None:
    vectors = await indexing.embed_bodies(EMBEDDER, [unit["body"] for unit in batch.units])
    await store.add(notes_table(batch.units, vectors, 16, EMBEDDER.name), quiet_table(batch.quiet))


def test_a_batch_is_numbered_noise_is_kept_quiet_and_a_reply_carries_the_turn_it_answers() -> None:
    fresh = rows(
        ("Ana: Is the Acme invoice paid?", T0, "a"),
        ("/status", T0 + timedelta(seconds=5), "b"),
        ("Bo: Yes, paid on Monday.", T0 + timedelta(minutes=1), "c"),
        ("Bo: Globex paid too.", T0 + timedelta(minutes=2), "d"),
    )
    states = {"conv": indexing.ScopeState()}
    batch = indexing.plan(fresh, states)
    assert [row["seq"] for row in fresh] == [0, 1, 2, 3]
    assert [row["ref"] for row in batch.quiet] == ["b"]
    first, reply, more = batch.units
    assert first["episode"] == reply["episode"] and first["speaker"] == "Ana" and reply["speaker"] == "Bo"
    assert turns.split_indexed(reply["body"]) == ("Bo: Yes, paid on Monday.", "Ana: Is the Acme invoice paid?")
    assert turns.split_indexed(more["body"]) == ("Bo: Globex paid too.", "")  # the same speaker goes on: no reply
    assert states["conv"].lines[:2] == ["Ana: Is the Acme invoice paid?", "Bo: Yes, paid on Monday."]
    assert states["conv"].speakers == {"Ana", "Bo"} and batch.closed == []


def test_a_gap_closes_the_episode_and_a_long_note_is_indexed_in_chunks() -> None:
    long = "Bo: " + "Globex asked for the whole migration plan again. " * 60
    fresh = rows(("Ana: The Acme retainer is renewed.", T0, "a"), (long, T0 + EPISODE_GAP, "b"))
    batch = indexing.plan(fresh, {"conv": indexing.ScopeState()})
    [(scope, episode, lines, start, end)] = batch.closed
    assert (scope, lines, start, end) == ("conv", ["Ana: The Acme retainer is renewed."], T0, T0)
    assert batch.units[0]["episode"] == episode != batch.units[1]["episode"]
    parts = [unit for unit in batch.units if unit["ref"] == "b"]
    assert [unit["part"] for unit in parts] == list(range(len(turns.chunks(long))))
    assert len(parts) > 1 and parts[0]["text"] == long and all(unit["text"] == "" for unit in parts[1:])
    assert "Ana" not in parts[0]["body"]  # across an episode's end no turn is answered


async def test_a_note_fed_again_is_not_written_twice_and_another_text_under_its_ref_is_kept_as_stored(
    store: SemanticStore, caplog: pytest.LogCaptureFixture
) -> None:
    first = rows(("Ana: The Acme retainer is renewed.", T0, "a"))
    await write(store, indexing.plan(await indexing.unstored(store, first), {"conv": indexing.ScopeState()}))
    again = rows(
        ("Ana: The Acme retainer is renewed.", T0, "a"),
        ("Ana: The Acme retainer is cancelled!", T0, "a"),
        ("Bo: Globex wants a demo.", T0 + timedelta(minutes=1), "b"),
        ("Bo: Globex wants a demo.", T0 + timedelta(minutes=1), "b"),
    )
    with caplog.at_level(logging.WARNING, logger="memory.semantic.indexing"):
        fresh = await indexing.unstored(store, again)
    assert [row["ref"] for row in fresh] == ["b"]
    assert again[0]["id"] == again[1]["id"] == first[0]["id"] and again[3]["id"] == again[2]["id"]
    assert any("another text" in r.getMessage() and "['a']" in r.getMessage() for r in caplog.records)


async def test_a_scopes_state_is_read_back_after_a_restart(store: SemanticStore) -> None:
    fresh = rows(
        ("Ana: Is the Acme invoice paid?", T0, "a"),
        ("ok", T0 + timedelta(seconds=30), "b"),
        ("Bo: Yes, paid on Monday.", T0 + timedelta(minutes=1), "c"),
    )
    live = {"conv": indexing.ScopeState()}
    await write(store, indexing.plan(fresh, live))
    summaries = EpisodeSummaries(store, None, asyncio.Lock(), lambda: T0)
    state = await indexing.read_state(store, "conv", summaries.lines)
    assert (state.seq, state.episode, state.turns, state.lines) == (2, live["conv"].episode, 2, live["conv"].lines)
    assert state.speakers == {"Ana", "Bo"} and state.previous == turns.parse("Bo: Yes, paid on Monday.")
    assert (state.episode_start, state.last_at) == (T0, T0 + timedelta(minutes=1))
    assert await indexing.read_state(store, "empty", summaries.lines) == indexing.ScopeState()
