"""The connection and table handles: LanceDB loaded only when memory is opened, missing folders seen, reset."""

from __future__ import annotations

import shutil
from pathlib import Path

from memory.semantic.handles import OpenTables
from memory.semantic.tables import EPISODES, QUIET, TABLE, TABLES, notes_table
from tests.memory.semantic.test_semantic import HashEmbedder
from tests.memory.semantic.test_tables import unit

EMBEDDER = HashEmbedder()

async def test_open_creates_the_three_tables_and_a_lost_folder_is_seen(tmp_path: Path) -> None:
    tables = await OpenTables.open(tmp_path, 16, EMBEDDER.name)
    try:
        assert set(tables.tables) == set(TABLES) and tables.missing() is None
        assert {index.columns[0] for index in await tables.notes.list_indices()} >= {"scope", "body"}
        shutil.rmtree(tmp_path / "quiet.lance")
        assert tables.missing() == tmp_path / "quiet.lance"
    finally:
        tables.close()


async def test_a_swapped_table_holds_the_new_rows_and_reset_empties_everything(tmp_path: Path) -> None:
    tables = await OpenTables.open(tmp_path, 16, EMBEDDER.name)
    await tables.swap(TABLE, notes_table([unit("n1")], await EMBEDDER.embed_passages(["Acme pays"]), 16, EMBEDDER.name))
    assert await tables.notes.count_rows() == 1 and tables.schema.field("vector").type.list_size == 16
    shutil.rmtree(tmp_path / "episodes.lance")  # broken storage: reset must not need it
    await tables.reset()
    try:
        assert tables.missing() is None
        assert [await tables.tables[name].count_rows() for name in (TABLE, QUIET, EPISODES)] == [0, 0, 0]
    finally:
        tables.close()
