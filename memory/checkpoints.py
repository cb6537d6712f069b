"""Pruning of old LangGraph checkpoints. Each conversation keeps its newest checkpoints (the newest
holds the whole state, including a pending approval's interrupt); older ones only grow the file."""

from __future__ import annotations

import aiosqlite

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
