"""LanceDB storage for semantic memory: one ``notes`` table, scope-filtered vector and full-text search.

Only LanceDB's async API is used, so no call blocks the event loop.

Index freshness (checked against lancedb 0.40): rows appended after an index was built are still
searched, by a flat scan of the unindexed part, so results are correct without ``optimize()``;
only speed degrades as that tail grows. Once 1,000 rows wait, a write starts a background refresh
(``optimize()``: compaction plus incremental index update); a search waits for one only when the
unindexed tail is large; the scheduler's maintain() folds in whatever remains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.expr import Expr, col, lit
from lancedb.index import FTS, BTree, IvfRq

log = logging.getLogger(__name__)

TABLE = "notes"
COLUMNS = ["id", "scope", "ref", "source", "text", "at"]
_META_EMBEDDER = b"solo_coo.embedder"
# From this many rows on an IVF-RaBitQ index (with refine) answers faster than an exact scan: at 10k
# rows it cuts ~4 ms from recall's p95 with 0.99 top-10 overlap with exact search (bench/recall_scale.py).
VECTOR_INDEX_MIN_ROWS = 5_000
REFINE_FACTOR = 10
# Past this many unindexed rows a search waits for the refresh rather than flat-scan them.
INLINE_REFRESH_ROWS = 20_000
# A background refresh (compaction plus index update) starts only once this many rows wait;
# smaller tails are searched by a flat scan, correctly, and the scheduler's maintain() folds them in.
BACKGROUND_REFRESH_ROWS = 1_000


def notes_schema(dim: int, embedder: str) -> pa.Schema:
    """Schema of the ``notes`` table; the embedder's name rides in the schema metadata."""
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("scope", pa.string(), nullable=False),
            pa.field("ref", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        ],
        metadata={_META_EMBEDDER: embedder.encode()},
    )


def scope_is(scope: str) -> Expr:
    """Filter on one scope, built as an expression so no value is ever spliced into SQL."""
    return col("scope") == lit(scope)


@dataclass(frozen=True)
class StoreStats:
    """What one optimisation pass did."""

    rows: int
    fragments_removed: int
    fragments_added: int
    old_versions_removed: int
    bytes_removed: int
    vector_index: bool


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Fuse ranked id lists: score(id) = sum(weight / (k + rank)), rank from 1. Best first.

    Ties break on the best single rank, then on the id, so the order is fully deterministic.
    """
    weights = weights if weights is not None else [1.0] * len(rankings)
    scores: dict[str, float] = {}
    best: dict[str, int] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
            best[key] = min(best.get(key, rank), rank)
    return sorted(scores.items(), key=lambda item: (-item[1], best[item[0]], item[0]))


class _Gate:
    """Many searches at once, or one operation that deletes old files; never both."""

    def __init__(self) -> None:
        self._readers = 0
        self._writer = False
        self._cond = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._writer)
            self._readers += 1
        try:
            yield
        finally:
            async with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._writer and self._readers == 0)
            self._writer = True
        try:
            yield
        finally:
            async with self._cond:
                self._writer = False
                self._cond.notify_all()


class SemanticStore:
    """The ``notes`` table. Construct with :meth:`open`; close with :meth:`close`."""

    def __init__(self, conn: Any, table: Any, schema: pa.Schema, auto_refresh: bool = True) -> None:
        self._conn = conn
        self._auto_refresh = auto_refresh
        self._table = table
        self._schema = schema
        self._write = asyncio.Lock()
        self._gate = _Gate()
        self._pending = 0
        self._refresh_task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, root: Path, dim: int, embedder: str, auto_refresh: bool = True) -> SemanticStore:
        """Open ``<root>/notes``, creating it (with its scope and full-text indexes) if missing.

        ``auto_refresh`` starts a background index refresh after each write.
        """
        conn = await lancedb.connect_async(str(root))
        if TABLE in (await conn.list_tables()).tables:
            table = await conn.open_table(TABLE)
        else:
            table = await conn.create_table(TABLE, schema=notes_schema(dim, embedder))
        store = cls(conn, table, await table.schema(), auto_refresh)
        await store._ensure_indexes()
        return store

    @property
    def embedder(self) -> str:
        """Name of the embedder whose vectors are stored."""
        return (self._schema.metadata or {}).get(_META_EMBEDDER, b"").decode()

    @property
    def dim(self) -> int:
        """Vector length of the table."""
        return int(self._schema.field("vector").type.list_size)

    async def _ensure_indexes(self, replace: bool = False) -> None:
        names = {index.name for index in await self._table.list_indices()}
        if replace or "scope_idx" not in names:
            await self._table.create_index("scope", config=BTree(), replace=True)
        if replace or "text_idx" not in names:
            await self._table.create_index("text", config=FTS(), replace=True)

    async def _vector_index(self) -> bool:
        """Build the ANN index once the table is big enough; report whether one exists."""
        names = {index.name for index in await self._table.list_indices()}
        if "vector_idx" in names:
            return True
        if await self._table.count_rows() < VECTOR_INDEX_MIN_ROWS:
            return False
        await self._table.create_index("vector", config=IvfRq(distance_type="cosine"), replace=True)
        return True

    # -- writes --------------------------------------------------------------------------------
    async def add(self, rows: pa.Table) -> None:
        """Append rows (already validated, schema-conformant) in one commit."""
        async with self._write:
            await self._table.add(rows)
            self._pending += rows.num_rows
        idle = self._refresh_task is None or self._refresh_task.done()
        if self._auto_refresh and idle and self._pending >= BACKGROUND_REFRESH_ROWS:
            self._refresh_task = asyncio.get_running_loop().create_task(self._background_refresh())

    async def _background_refresh(self) -> None:
        try:
            while self._pending >= BACKGROUND_REFRESH_ROWS:
                await self.refresh()
        except Exception:  # a failed refresh only costs speed; the rows stay pending for the next try
            log.warning("semantic memory index refresh failed", exc_info=True)

    async def refresh(self) -> None:
        """Fold rows written since the last refresh into the indexes (no-op when there are none)."""
        async with self._write:
            if not self._pending:
                return
            folded = self._pending
            await self._table.optimize()
            await self._vector_index()
            self._pending -= folded

    async def delete(self, where: Expr) -> int:
        """Delete matching rows; returns how many."""
        async with self._write:
            result = await self._table.delete(where)
        return int(result.num_deleted_rows)

    async def optimize(self, prune: bool) -> StoreStats:
        """Compact, update indexes and, with ``prune``, delete every old version's files now."""
        async with self._write:
            return await self._optimize_locked(prune)

    async def _optimize_locked(self, prune: bool) -> StoreStats:
        # Lock order everywhere: the write lock first, then the gate.
        async with self._gate.exclusive():
            with warnings.catch_warnings():
                # Pruning everything is deliberate (forgotten notes must go); the gate keeps this
                # process's searches off the old files, and the directory belongs to one process.
                warnings.simplefilter("ignore", UserWarning)
                stats = await self._table.optimize(cleanup_older_than=timedelta(0) if prune else None)
        self._pending = 0
        has_vector_index = await self._vector_index()
        return StoreStats(
            rows=await self._table.count_rows(),
            fragments_removed=stats.compaction.fragments_removed,
            fragments_added=stats.compaction.fragments_added,
            old_versions_removed=stats.prune.old_versions_removed,
            bytes_removed=stats.prune.bytes_removed,
            vector_index=has_vector_index,
        )

    async def rewrite(
        self,
        transform: Callable[[pa.Table], Awaitable[pa.Table]],
        with_vectors: bool,
        dim: int,
        embedder: str,
    ) -> StoreStats:
        """Replace the table with ``transform(every row)``, rebuild every index, drop all old files.

        Writes wait for the whole rewrite (so none is lost); searches wait only for the swap.
        """
        schema = notes_schema(dim, embedder)
        async with self._write:
            columns = [*COLUMNS, "vector"] if with_vectors else COLUMNS
            rows = await transform(await self._table.query().select(columns).to_arrow())
            async with self._gate.exclusive():
                old = self._table
                self._table = await self._conn.create_table(TABLE, data=rows.cast(schema), mode="overwrite")
                old.close()
                self._schema = await self._table.schema()
                await self._ensure_indexes(replace=True)
            return await self._optimize_locked(prune=True)

    async def index_lag(self) -> int:
        """Rows not yet in the most out-of-date index (0 when every index is current)."""
        lags = [index.num_unindexed_rows for index in await self._table.list_indices()]
        return max(lags, default=0)

    # -- reads ---------------------------------------------------------------------------------
    async def count(self, scope: str | None = None) -> int:
        """Rows in one scope, or in all of them."""
        async with self._gate.shared():
            return int(await self._table.count_rows(None if scope is None else scope_is(scope).to_sql()))

    async def _before_search(self) -> None:
        if self._pending >= INLINE_REFRESH_ROWS:
            await self.refresh()

    async def vector_search(self, vector: np.ndarray, scope: str, limit: int) -> list[dict[str, Any]]:
        """Nearest rows by cosine distance within one scope (filter applied before the search)."""
        await self._before_search()
        async with self._gate.shared():  # build inside: a rewrite may swap the table
            query = (
                self._table.query()
                .nearest_to(vector)
                .distance_type("cosine")
                .where(scope_is(scope))
                .limit(limit)
                # With the 1-bit ANN index, re-score 10x the candidates on full vectors (~2 ms at 100k
                # rows; top-20 overlap with exact search 0.42 -> 0.95). No effect on an exact scan.
                .refine_factor(REFINE_FACTOR)
                .select([*COLUMNS, "_distance"])
            )
            result = await query.to_arrow()
        rows: list[dict[str, Any]] = result.to_pylist()
        return rows

    async def text_search(self, text: str, scope: str, limit: int) -> list[dict[str, Any]]:
        """BM25 full-text matches within one scope; the query is taken as plain terms."""
        await self._before_search()
        async with self._gate.shared():  # build inside: a rewrite may swap the table
            query = (
                self._table.query()
                .nearest_to_text(text, columns="text")
                .where(scope_is(scope))
                .limit(limit)
                .select([*COLUMNS, "_score"])
            )
            result = await query.to_arrow()
        rows: list[dict[str, Any]] = result.to_pylist()
        return rows

    async def close(self) -> None:
        """Finish a running refresh, then release the table and connection."""
        if self._refresh_task is not None:
            await asyncio.gather(self._refresh_task, return_exceptions=True)
        self._table.close()
        self._conn.close()
