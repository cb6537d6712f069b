"""Searches within one scope on real tables: unfiltered only while the scope is alone, filtered otherwise."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from memory.semantic import searches
from memory.semantic.handles import OpenTables
from memory.semantic.tables import EPISODES, TABLE, notes_table
from tests.memory.semantic.test_semantic import HashEmbedder
from tests.memory.semantic.test_tables import unit

EMBEDDER = HashEmbedder()
NOTES = [("a1", "a", "Acme pays invoices on net 45 terms"), ("b1", "b", "Acme pays invoices late every month")]


@pytest.fixture
async def tables(tmp_path: Path) -> AsyncIterator[OpenTables]:
    tables = await OpenTables.open(tmp_path, 16, EMBEDDER.name)
    rows = [unit(id_, text, scope=scope, episode=f"e-{scope}") for id_, scope, text in NOTES]
    vectors = await EMBEDDER.embed_passages([text for *_, text in NOTES])
    await tables.notes.add(notes_table(rows, vectors, 16, EMBEDDER.name))
    yield tables
    tables.close()


async def test_a_scope_written_by_someone_else_is_found_and_the_search_made_again_filtered(
    tables: OpenTables,
) -> None:
    vector = await EMBEDDER.embed_query("Acme pays invoices")
    for build in (searches.nearest(vector, 5), searches.matching("Acme pays invoices", 5, TABLE)):
        result, others = await searches.in_scope(tables.notes, build, "a", known={"a"})
        assert result.column("id").to_pylist() == ["a1"] and others == {"b"}
        result, others = await searches.in_scope(tables.notes, build, "a", known={"a", "b"})
        assert result.column("id").to_pylist() == ["a1"] and others == set()


async def test_each_search_returns_the_columns_recall_scores_with(tables: OpenTables) -> None:
    vector = await EMBEDDER.embed_query("Acme")
    near, _ = await searches.in_scope(tables.notes, searches.nearest(vector, 5), "b", known={"a", "b"})
    assert "_distance" in near.column_names and "vector" not in near.column_names and "text" in near.column_names
    text, _ = await searches.in_scope(tables.notes, searches.matching("late", 5, TABLE), "b", known={"a", "b"})
    assert text.column("id").to_pylist() == ["b1"] and {"_score", "vector"} <= set(text.column_names)
    episodes, _ = await searches.in_scope(
        tables.tables[EPISODES], searches.matching("late", 5, EPISODES), "b", known=set()
    )
    assert episodes.column_names == ["id", "scope", "_score"] and episodes.num_rows == 0


async def test_a_query_that_looks_like_sql_is_only_words(tables: OpenTables) -> None:
    hostile = "late' OR scope = 'a' --"
    result, _ = await searches.in_scope(tables.notes, searches.matching(hostile, 5, TABLE), "b", known={"a", "b"})
    assert result.column("scope").to_pylist() == ["b"]
