"""The connection and table handles: LanceDB loaded only when memory is opened, missing folders seen, reset."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from memory.semantic.handles import OpenTables
from memory.semantic.tables import EPISODES, QUIET, TABLE, TABLES, notes_table
from tests.conftest import subprocess_env
from tests.memory.semantic.test_semantic import HashEmbedder
from tests.memory.semantic.test_tables import unit

EMBEDDER = HashEmbedder()

IMPORT = "import sys, bot.compose.root; print(sorted(m for m in sys.modules if m.split('.')[0] == 'lancedb'))"


def test_the_composition_root_does_not_load_lancedb(tmp_path: Path) -> None:
    # LanceDB costs ~1 s of CPU to import: a `coo run` with semantic memory off must not pay it.
    # (It is loaded when a store is opened: by the filters, the handles and the indexes.)
    env = subprocess_env(tmp_path / "data", COO_MEMORY__SEMANTIC="false")
    done = subprocess.run(
        [sys.executable, "-c", IMPORT], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


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
