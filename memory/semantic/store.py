"""LanceDB storage for semantic memory, async API only, so no call blocks the event loop.

The tables (``notes``, ``quiet``, ``episodes``) and their columns are in :mod:`memory.semantic.tables`,
their indexes in :mod:`memory.semantic.indexes`. Rows appended after an index was built are searched
by a flat scan until they are folded in: once 1,000 rows wait, a write starts a background refresh
(``optimize()``: compaction plus incremental index update); a search waits for one only when the
unindexed tail is large; the scheduler's maintain() folds in whatever remains.

Every LanceDB failure (its folder deleted, a data file missing, a full disk) surfaces as
``MemoryUnavailable``; ``rebuild`` makes empty tables so memory works again. LanceDB itself is
imported when a store is opened, not with this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from memory.semantic import indexes, searches
from memory.semantic.contracts import MemoryUnavailable
from memory.semantic.filters import first_part, is_, scope_is
from memory.semantic.gate import Gate
from memory.semantic.handles import OpenTables
from memory.semantic.tables import (
    COLUMNS,
    EPISODE_COLUMNS,
    EPISODES,
    QUIET,
    TABLE,
    TABLES,
    embedder_of,
    episodes_schema,
    notes_schema,
    with_vectors,
)

if TYPE_CHECKING:
    from lancedb.expr import Expr

log = logging.getLogger(__name__)

# Past this many unindexed rows a search waits for the refresh rather than flat-scan them.
INLINE_REFRESH_ROWS = 20_000
# A background refresh (compaction plus index update) starts only once this many rows wait;
# smaller tails are searched by a flat scan, correctly, and the scheduler's maintain() folds them in.
BACKGROUND_REFRESH_ROWS = 1_000


@dataclass(frozen=True)
class StoreStats:
    """What one optimisation pass did; ``rebuilt`` when broken tables were replaced by empty ones."""

    rows: int
    fragments_removed: int
    fragments_added: int
    old_versions_removed: int
    bytes_removed: int
    vector_index: bool
    rebuilt: bool = False


@contextlib.contextmanager
def _storage() -> Iterator[None]:
    """Turn any failure of LanceDB into ``MemoryUnavailable`` (cancellation passes through)."""
    try:
        yield
    except MemoryUnavailable:
        raise
    except Exception as exc:
        raise MemoryUnavailable(f"semantic memory storage failed: {exc}") from exc


class SemanticStore:
    """The three tables. Construct with :meth:`open`; close with :meth:`close`."""

    def __init__(self, tables: OpenTables, auto_refresh: bool = True) -> None:
        self._t = tables
        self._auto_refresh = auto_refresh
        self._write = asyncio.Lock()
        self._gate = Gate()
        self._pending = 0
        self._refresh_task: asyncio.Task[None] | None = None
        # The scopes each searched table may hold (a superset while a write is under way): a search
        # in the only scope a table holds needs no filter (see ``_search``).
        self._scopes: dict[str, set[str]] = {TABLE: set(), EPISODES: set()}

    @classmethod
    async def open(cls, root: Path, dim: int, embedder: str, auto_refresh: bool = True) -> SemanticStore:
        """Open (creating what is missing, with indexes) the tables under ``root``.

        ``auto_refresh`` starts a background index refresh once enough rows wait.
        """
        with _storage():
            store = cls(await OpenTables.open(root, dim, embedder), auto_refresh)
            await store._load_scopes()
        return store

    async def _load_scopes(self, *names: str) -> None:
        """Read which scopes the searched tables hold (~20 ms at 100k rows, ad hoc); callers hold the write lock."""
        for name in names or (TABLE, EPISODES):
            column = (await self._tables[name].query().select(["scope"]).to_arrow()).column("scope")
            self._scopes[name] = set(pc.unique(column).to_pylist())

    @property
    def embedder(self) -> str:
        """Name of the embedder whose vectors are stored."""
        return embedder_of(self._t.schema)

    @property
    def dim(self) -> int:
        """Vector length of the tables."""
        return int(self._t.schema.field("vector").type.list_size)

    @property
    def _tables(self) -> dict[str, Any]:
        return self._t.tables

    @property
    def _notes(self) -> Any:
        return self._t.notes

    def _check_present(self) -> None:
        # A deleted folder is not noticed by LanceDB's cached handles (a write even "succeeds" into
        # a half-recreated directory): look before writing.
        missing = self._t.missing()
        if missing is not None:
            raise MemoryUnavailable(f"semantic memory storage is missing: {missing}")

    # -- writes --------------------------------------------------------------------------------
    async def add(self, rows: pa.Table | None, quiet: pa.Table | None = None) -> None:
        """Append indexed rows and quiet rows (already validated, schema-conformant)."""
        async with self._write:
            self._check_present()
            with _storage():
                if quiet is not None and quiet.num_rows:
                    await self._tables[QUIET].add(quiet)
                if rows is not None and rows.num_rows:
                    self._scopes[TABLE] |= set(pc.unique(rows.column("scope")).to_pylist())
                    await self._notes.add(rows)
                    self._pending += rows.num_rows
        idle = self._refresh_task is None or self._refresh_task.done()
        if self._auto_refresh and idle and self._pending >= BACKGROUND_REFRESH_ROWS:
            self._refresh_task = asyncio.get_running_loop().create_task(self._background_refresh())

    async def put_episode(self, row: pa.Table) -> None:
        """Insert or replace one episode summary (by id)."""
        async with self._write:
            self._check_present()
            self._scopes[EPISODES] |= set(row.column("scope").to_pylist())
            with _storage():
                await (
                    self._tables[EPISODES]
                    .merge_insert("id")
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .execute(row)
                )

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
            with _storage():
                await self._notes.optimize()
                await self._tables[EPISODES].optimize()
                if await indexes.vector_index(self._notes) == "built":
                    await self._notes.optimize()  # fragments under the old index's segments merge only now
            self._pending -= folded

    async def delete(self, where: Expr) -> int:
        """Delete matching notes (every part) and quiet notes; returns how many notes."""
        async with self._write:
            with _storage():
                notes = int(await self._notes.count_rows((where & first_part()).to_sql()))
                await self._notes.delete(where)
                quiet = await self._tables[QUIET].delete(where)
                await self._load_scopes(TABLE)
        return notes + int(quiet.num_deleted_rows)

    async def replace(self, where: Expr, rows: pa.Table) -> None:
        """Swap the notes rows matching ``where`` for ``rows`` (e.g. re-indexed without a forgotten context)."""
        async with self._write:
            self._check_present()
            self._scopes[TABLE] |= set(pc.unique(rows.column("scope")).to_pylist())
            with _storage():
                await self._notes.delete(where)
                await self._notes.add(rows)
                self._pending += rows.num_rows

    async def delete_episode(self, episode: str) -> None:
        """Remove one episode summary."""
        async with self._write:
            with _storage():
                await self._tables[EPISODES].delete(is_("id", episode).to_sql())
                await self._load_scopes(EPISODES)

    async def optimize(self, prune: bool) -> StoreStats:
        """Compact, update indexes and, with ``prune``, delete every old version's files now."""
        async with self._write:
            return await self._optimize_locked(prune)

    async def _optimize_locked(self, prune: bool) -> StoreStats:
        cleanup = timedelta(0) if prune else None
        passes = [await self._compact(cleanup, TABLES)]
        self._pending = 0
        with _storage():
            # Outside the gate: building the index takes seconds at 100k rows, and searches go on.
            # Maintenance leaves it in one segment, so the notes compact into one fragment.
            index = await indexes.vector_index(self._notes, max_segments=1)
        if index == "built":  # fragments under the old index's segments merge only now
            passes.append(await self._compact(cleanup, (TABLE,)))
        with _storage():
            rows = await self._notes.count_rows()
        return StoreStats(
            rows=rows,
            fragments_removed=sum(p.compaction.fragments_removed for p in passes),
            fragments_added=sum(p.compaction.fragments_added for p in passes),
            old_versions_removed=sum(p.prune.old_versions_removed for p in passes),
            bytes_removed=sum(p.prune.bytes_removed for p in passes),
            vector_index=index != "none",
        )

    async def _compact(self, cleanup: timedelta | None, names: tuple[str, ...]) -> Any:
        """Optimize the named tables (``notes`` first); LanceDB's stats of the first one."""
        # Lock order everywhere: the write lock first, then the gate.
        async with self._gate.exclusive():
            with warnings.catch_warnings(), _storage():
                # Pruning everything is deliberate (forgotten notes must go); the gate keeps this
                # process's searches off the old files, and the directory belongs to one process.
                warnings.simplefilter("ignore", UserWarning)
                stats = [await self._tables[name].optimize(cleanup_older_than=cleanup) for name in names]
        return stats[0]

    async def rewrite(
        self,
        transform: Callable[[pa.Table, pa.Table], Awaitable[tuple[pa.Table, pa.Table]]],
        with_vectors: bool,
        dim: int,
        embedder: str,
    ) -> StoreStats:
        """Replace notes and episodes with ``transform(notes, episodes)``, rebuild every index, drop old files.

        Writes wait for the whole rewrite (so none is lost); searches wait only for the swap.
        """
        async with self._write:
            with _storage():
                extra = ["vector"] if with_vectors else []
                notes = await self._notes.query().select([*COLUMNS, "body", *extra]).to_arrow()
                episodes = await self._tables[EPISODES].query().select(EPISODE_COLUMNS).to_arrow()
            new_notes, new_episodes = await transform(notes, episodes)
            async with self._gate.exclusive():
                with _storage():
                    await self._t.swap(TABLE, new_notes.cast(notes_schema(dim, embedder)))
                    await self._t.swap(EPISODES, new_episodes.cast(episodes_schema()))
                    await self._t.rewritten(dim, embedder)
                    await self._load_scopes()
            return await self._optimize_locked(prune=True)

    async def healthy(self) -> bool:
        """Whether every table is present and fully readable (reads every fragment's id column)."""
        try:
            self._check_present()
            with _storage():
                for table in self._tables.values():
                    await table.checkout_latest()
                    await table.query().select(["id"]).to_arrow()
                await self._notes.query().nearest_to_text("probe", columns="body").limit(1).to_arrow()
        except MemoryUnavailable:
            log.warning("semantic memory storage is broken", exc_info=True)
            return False
        return True

    async def rebuild(self) -> None:
        """Replace the tables by empty ones (with indexes). What the broken files held is lost."""
        async with self._write, self._gate.exclusive():
            with _storage():
                await self._t.reset()
                await self._load_scopes()
            self._pending = 0

    async def index_lag(self) -> int:
        """Rows not yet in the most out-of-date index of ``notes`` (0 when every index is current)."""
        with _storage():
            lags = [index.num_unindexed_rows for index in await self._notes.list_indices()]
        return max(lags, default=0)

    # -- reads ---------------------------------------------------------------------------------
    async def count(self, scope: str | None = None) -> int:
        """Notes (not chunks) in one scope, or in all of them, quiet ones included."""
        where = first_part() if scope is None else scope_is(scope) & first_part()
        async with self._gate.shared():
            with _storage():
                notes = await self._notes.count_rows(where.to_sql())
                quiet = await self._tables[QUIET].count_rows(None if scope is None else scope_is(scope).to_sql())
        return int(notes) + int(quiet)

    async def scan(
        self, scope: str | None, columns: list[str], where: Expr | None = None, table: str = TABLE
    ) -> pa.Table:
        """Selected columns of every row of ``scope`` (None: of all scopes), optionally narrowed by ``where``."""
        filters = [f for f in (None if scope is None else scope_is(scope), where) if f is not None]
        async with self._gate.shared():
            with _storage():
                query = self._tables[table].query()
                if filters:
                    query = query.where(filters[0] if len(filters) == 1 else filters[0] & filters[1])
                result: pa.Table = await query.select(columns).to_arrow()
        return result

    async def _before_search(self) -> None:
        if self._pending >= INLINE_REFRESH_ROWS:
            await self.refresh()

    async def vector_search(
        self, vector: np.ndarray, scope: str, limit: int, table: str = TABLE
    ) -> list[dict[str, Any]]:
        """Nearest rows by cosine distance within one scope (filter applied before the search)."""
        return await self._search(table, scope, searches.nearest(vector, limit))

    async def text_search(self, text: str, scope: str, limit: int, table: str = TABLE) -> list[dict[str, Any]]:
        """BM25 full-text matches on ``body`` within one scope (see :func:`memory.semantic.searches.matching`)."""
        return await self._search(table, scope, searches.matching(text, limit, table))

    async def _search(self, table: str, scope: str, build: searches.Build) -> list[dict[str, Any]]:
        await self._before_search()
        async with self._gate.shared():  # build inside: a rewrite may swap the table
            with _storage():
                result, others = await searches.in_scope(self._tables[table], build, scope, self._scopes[table])
        self._scopes[table] |= others
        return with_vectors(result)

    async def close(self) -> None:
        """Finish a running refresh, then release the tables and connection."""
        if self._refresh_task is not None:
            await asyncio.gather(self._refresh_task, return_exceptions=True)
        self._t.close()
