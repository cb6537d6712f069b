"""LangGraph checkpoints in SQLite: a saver that stores and loads in one round trip, and pruning of old
checkpoints. Each conversation keeps its newest checkpoints (the newest holds the whole state,
including a pending approval's interrupt); older ones only grow the file."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any, cast

import aiosqlite
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.checkpoint.sqlite.utils import load_pending_writes, pending_writes_sql

from memory.grouped import Grouped, each, in_one_transaction

_LATEST = (
    "SELECT thread_id, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata FROM checkpoints "
    "WHERE thread_id = ? AND checkpoint_ns = ? ORDER BY checkpoint_id DESC LIMIT 1"
)
_BY_ID = (
    "SELECT thread_id, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata FROM checkpoints "
    "WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?"
)
_PUT = (
    "INSERT OR REPLACE INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, "
    "checkpoint, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_WRITE = (
    "INSERT OR {verb} INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, "
    "value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class OneTripSqliteSaver(AsyncSqliteSaver):
    """``AsyncSqliteSaver`` whose load, store and store-writes each take one round trip to SQLite's thread.

    The parent takes five to seven (cursor, execute, fetch, commit, close), each a thread wake-up on
    both sides, behind one lock that every conversation's turn queues on. Same tables, same SQL,
    same serialization; everything else is the parent's.
    """

    def __init__(self, conn: aiosqlite.Connection, *, serde: SerializerProtocol | None = None) -> None:
        """Checkpoints in ``conn``'s database. Loads, and stores, of several conversations at once go to
        SQLite's thread together (``memory.grouped``): stores in one transaction, each its own savepoint."""
        super().__init__(conn, serde=serde)
        self._loads = Grouped(conn, each, self.lock, name="checkpoint-loads")
        self._stores = Grouped(conn, in_one_transaction, self.lock, name="checkpoint-stores")

    async def setup(self) -> None:
        """Create the tables once (the parent takes its lock on every call to find out)."""
        if not self.is_setup:
            await super().setup()

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names (or the thread's latest) with its pending writes."""
        await self.setup()
        thread_id = str(config["configurable"]["thread_id"])
        checkpoint_ns = config["configurable"].get("checkpoint_ns", "")
        wanted = get_checkpoint_id(config)
        writes_sql = pending_writes_sql(self._has_task_path)

        def load(conn: sqlite3.Connection) -> tuple[Any, list[Any]] | None:
            if wanted:
                row = conn.execute(_BY_ID, (thread_id, checkpoint_ns, wanted)).fetchone()
            else:
                row = conn.execute(_LATEST, (thread_id, checkpoint_ns)).fetchone()
            if row is None:
                return None
            return row, conn.execute(writes_sql, (thread_id, checkpoint_ns, row[1])).fetchall()

        found = await self._loads.run(load)
        if found is None:
            return None
        (thread, checkpoint_id, parent_id, type_, checkpoint, metadata), writes = found
        if not wanted:
            config = _config(thread, checkpoint_ns, checkpoint_id)
        parent = _config(thread, checkpoint_ns, parent_id) if parent_id else None
        return CheckpointTuple(
            config,
            self.serde.loads_typed((type_, checkpoint)),
            cast(CheckpointMetadata, json.loads(metadata) if metadata is not None else {}),
            parent,
            load_pending_writes(writes, self.serde),
        )

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint (committed before this returns)."""
        await self.setup()
        thread_id = config["configurable"]["thread_id"]
        checkpoint_ns = config["configurable"]["checkpoint_ns"]
        type_, blob = self.serde.dumps_typed(checkpoint)
        meta = json.dumps(get_checkpoint_metadata(config, metadata), ensure_ascii=False).encode("utf-8", "ignore")
        row = (
            str(thread_id),
            checkpoint_ns,
            checkpoint["id"],
            config["configurable"].get("checkpoint_id"),
            type_,
            blob,
            meta,
        )

        await self._stores.run(lambda conn: conn.execute(_PUT, row))
        return _config(thread_id, checkpoint_ns, checkpoint["id"])

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes for a checkpoint (committed before this returns)."""
        await self.setup()
        sql = _WRITE.format(verb="REPLACE" if all(w[0] in WRITES_IDX_MAP for w in writes) else "IGNORE")
        configurable = config["configurable"]
        rows = [
            (
                str(configurable["thread_id"]),
                str(configurable["checkpoint_ns"]),
                str(configurable["checkpoint_id"]),
                task_id,
                task_path,
                WRITES_IDX_MAP.get(channel, idx),
                channel,
                *self.serde.dumps_typed(value),
            )
            for idx, (channel, value) in enumerate(writes)
        ]

        await self._stores.run(lambda conn: conn.executemany(sql, rows))


def _config(thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns, "checkpoint_id": checkpoint_id}}


_PRUNE = """
DELETE FROM {table} WHERE rowid IN (
    SELECT t.rowid FROM {table} t
    JOIN (
        SELECT thread_id, checkpoint_ns, checkpoint_id,
               ROW_NUMBER() OVER (PARTITION BY thread_id, checkpoint_ns ORDER BY checkpoint_id DESC) AS rank
        FROM checkpoints
    ) ranked USING (thread_id, checkpoint_ns, checkpoint_id)
    WHERE ranked.rank > ?
)
"""


async def prune_checkpoints(conn: aiosqlite.Connection, keep_per_thread: int = 20) -> int:
    """Delete all but the newest ``keep_per_thread`` checkpoints of every thread; returns rows deleted.

    Checkpoint ids are time-ordered (uuid6), so "newest" is the largest id. Writes go first, while
    the checkpoints they belong to can still be ranked.
    """
    if keep_per_thread < 1:
        raise ValueError("keep_per_thread must be at least 1")
    writes = await conn.execute(_PRUNE.format(table="writes"), (keep_per_thread,))
    checkpoints = await conn.execute(_PRUNE.format(table="checkpoints"), (keep_per_thread,))
    await conn.commit()
    return (writes.rowcount or 0) + (checkpoints.rowcount or 0)
