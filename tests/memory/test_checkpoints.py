"""The one-trip checkpoint saver reads and writes exactly what LangGraph's own SQLite saver does."""

from __future__ import annotations

from pathlib import Path

from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from memory.checkpoints import OneTripSqliteSaver
from memory.db import connect_sqlite


async def test_what_one_saver_stores_the_other_reads_back_the_same(tmp_path: Path) -> None:
    conn = await connect_sqlite(tmp_path / "checkpoints.sqlite", 5000)
    try:
        ours, theirs = OneTripSqliteSaver(conn), AsyncSqliteSaver(conn)
        await ours.setup()
        thread = {"configurable": {"thread_id": "rec:1", "checkpoint_ns": ""}}
        first = empty_checkpoint()
        first["channel_values"] = {"messages": [{"role": "user", "content": "héllo ✓"}], "turn_key": "op:1"}
        first_config = await ours.aput(thread, first, {"source": "loop", "step": 1}, {})
        await ours.aput_writes(first_config, [("messages", [{"role": "assistant", "content": "hi"}])], "task-1")
        second = empty_checkpoint()
        second_config = await theirs.aput(first_config, second, {"source": "loop", "step": 2}, {})
        await theirs.aput_writes(second_config, [("reply", "done")], "task-2", "path")
        for config in (thread, first_config, second_config):
            mine, reference = await ours.aget_tuple(config), await theirs.aget_tuple(config)
            assert mine == reference and mine is not None
        latest = await ours.aget_tuple(thread)
        assert latest is not None and latest.checkpoint["id"] == second["id"]
        assert latest.parent_config == first_config and latest.pending_writes == [("task-2", "reply", "done")]
        old = await ours.aget_tuple(first_config)
        assert old is not None and old.checkpoint["channel_values"]["turn_key"] == "op:1"
        assert old.pending_writes == [("task-1", "messages", [{"role": "assistant", "content": "hi"}])]
        assert await ours.aget_tuple({"configurable": {"thread_id": "nobody", "checkpoint_ns": ""}}) is None
    finally:
        await conn.close()
