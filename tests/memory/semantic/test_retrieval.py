"""Recall's searches and ranking on a real store: a chunk's note comes back whole; faults become one error."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from memory.semantic import indexing
from memory.semantic.contracts import MemoryUnavailable
from memory.semantic.retrieval import MAX_K, Retrieval, check_question
from memory.semantic.store import SemanticStore
from tests.memory.semantic.test_indexing import EMBEDDER, T0, rows, write
from tests.memory.semantic.test_semantic import HashEmbedder

NOW = datetime(2024, 6, 1, tzinfo=UTC)
LONG = "Ana: " + "We went over the quarterly numbers line by line. " * 40 + "Finally: Globex signed the zebra contract."


class BrokenEmbedder(HashEmbedder):
    """Its model server is down."""

    async def embed_query(self, text: str) -> np.ndarray:
        raise ConnectionError("embedding server unreachable")

    async def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        raise ConnectionError("embedding server unreachable")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SemanticStore]:
    store = await SemanticStore.open(tmp_path / "lancedb", 16, EMBEDDER.name, auto_refresh=False)
    fresh = rows(("Bo: Acme pays on net 45 terms.", T0, "acme"), (LONG, T0 + timedelta(minutes=1), "long"))
    await write(store, indexing.plan(fresh, {"conv": indexing.ScopeState()}))
    yield store
    await store.close()


async def test_a_hit_in_a_later_chunk_of_a_long_note_comes_back_with_the_whole_note(store: SemanticStore) -> None:
    retrieval = Retrieval(store, EMBEDDER, lambda: NOW)
    [hit] = await retrieval.recall("zebra contract", 1, "conv", "hybrid", {"Ana", "Bo"})
    assert (hit.ref, hit.text, hit.scope, hit.at) == ("long", LONG, "conv", T0 + timedelta(minutes=1))
    texts = await retrieval.recall("Acme net 45", 2, "conv", "text", set())
    assert [h.ref for h in texts][:1] == ["acme"]
    assert await retrieval.recall("Acme net 45", 2, "elsewhere", "hybrid", set()) == []


def test_a_bad_question_is_refused_with_one_clear_error() -> None:
    assert check_question("what\x00 terms?", 3, "conv", "dense") == "what terms?"
    for args, message in (
        (("\x00 ", 3, "conv", "hybrid"), "query is empty"),
        (("terms", 0, "conv", "hybrid"), f"from 1 to {MAX_K}"),
        (("terms", 3, "conv", "fuzzy"), "unknown recall mode"),
        (("terms", 3, "", "hybrid"), "scope"),
    ):
        with pytest.raises(ValueError, match=message):
            check_question(*args)


async def test_a_failing_embedder_or_lost_storage_is_one_memory_unavailable(
    store: SemanticStore, tmp_path: Path
) -> None:
    with pytest.raises(MemoryUnavailable, match="the embedder failed"):
        await Retrieval(store, BrokenEmbedder(), lambda: NOW).recall("terms", 3, "conv", "hybrid", set())
    shutil.rmtree(tmp_path / "lancedb")
    with pytest.raises(MemoryUnavailable):  # three searches fail at once: one error, not a group
        await Retrieval(store, EMBEDDER, lambda: NOW).recall("Acme terms", 3, "conv", "hybrid", set())
