"""Every column of a portable store's tables is in its backup line, or left out on purpose: a column added
to a table and not to its line would otherwise be dropped from every backup without a word."""

from __future__ import annotations

from pathlib import Path

from memory.db import open_database
from memory.portable import PORTABLE


async def test_every_column_of_a_portable_table_is_in_its_line_or_kept_out_on_purpose(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        seen = set()
        for kind in PORTABLE:
            store = kind(db)
            await store.setup()
            for table in store.tables:
                columns = {row[1] for row in await db.fetchall(f"PRAGMA table_info({table.table})")}
                carried = {*table.columns, *table.written}
                assert carried <= columns, (table.table, carried - columns)
                assert columns - carried == table.kept_out, (table.table, columns - carried)
                seen.add(table.table)
    assert seen == {
        "events", "records", "approvals", "outbox", "notes", "goals", "tasks", "task_attempts", "followups",
        "pipeline_stages", "pipeline_next", "goal_evidence",
    }  # fmt: skip
    assert [store.name for store in PORTABLE] == [
        "events", "records", "approvals", "notes", "goals", "followups", "pipeline", "goal_evidence",
    ]  # fmt: skip
