"""LanceDB storage for semantic memory, async API only, so no call blocks the event loop.

Three tables under ``<data_dir>/lancedb``:

- ``notes``: what recall searches. One row per indexed unit: a note, or one chunk of a long note
  (``part`` 0, 1, ...; only part 0 carries the note's text). ``body`` is the indexed text (the note
  plus its context), full-text indexed and embedded into ``vector``. ``seq`` orders a scope's notes
  as they were added; ``episode`` links a turn to its episode.
- ``quiet``: notes kept but never searched (commands, "ok", "1"); ``count`` and ``forget`` see
  them, ``recall`` does not.
- ``episodes``: one summary per closed episode, full-text indexed, linked to its turns by id.

Index freshness (checked against lancedb 0.40): rows appended after an index was built are still
searched, by a flat scan of the unindexed part, so results are correct without ``optimize()``;
only speed degrades as that tail grows. Once 1,000 rows wait, a write starts a background refresh
(``optimize()``: compaction plus incremental index update); a search waits for one only when the
unindexed tail is large; the scheduler's maintain() folds in whatever remains.

Every LanceDB failure (its folder deleted, a data file missing, a full disk) surfaces as
``MemoryUnavailable``; ``rebuild`` makes empty tables so memory works again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.expr import Expr, col, lit
from lancedb.index import FTS, BTree, IvfRq

from memory.semantic.turns import parse

log = logging.getLogger(__name__)

VectorIndex = Literal["none", "current", "built"]
"""The vector index after a check: absent (too few rows), up to date, or built just now."""

TABLE = "notes"
QUIET = "quiet"
EPISODES = "episodes"
COLUMNS = ["id", "scope", "ref", "source", "text", "at", "speaker", "episode", "seq", "part"]
QUIET_COLUMNS = ["id", "scope", "ref", "source", "text", "at", "seq"]
EPISODE_COLUMNS = ["id", "scope", "start", "end", "turns", "summarizer", "body"]
_META_EMBEDDER = b"solo_coo.embedder"
# From this many rows on an IVF-RaBitQ index (with refine) answers faster than an exact scan: at 10k
# rows it cuts ~4 ms from recall's p95 with 0.99 top-10 overlap with exact search (bench/recall_scale.py).
VECTOR_INDEX_MIN_ROWS = 5_000
# 4-bit RaBitQ codes rank well enough that re-scoring 2x the limit on full vectors gives the exact
# top 10 at 100k rows: top-10 overlap with exact search 0.998, the query 11.6 ms p50; 1-bit codes
# with 10x re-scored gave 0.974 in 12.6 ms (ad-hoc timings of the vector search alone, same machine
# and queries; bench/recall_scale.py prints the whole recall and the top-10 overlap).
RQ_BITS = 4
REFINE_FACTOR = 2
# Each refresh adds the new rows' part of the vector index as a segment of its own, and LanceDB 0.40
# neither merges these nor compacts fragments that lie under different ones: a store filled by chat
# batches had 28 segments and 28 fragments at 100k notes, and recall took 42.5 ms p50 where it takes
# 26-30 ms on one segment and one fragment (ad-hoc timings, same notes and queries). Past this many
# segments the index is built anew (~2.4 s at 100k rows, ad hoc), and the next compaction merges.
MAX_VECTOR_SEGMENTS = 4
# Past this many unindexed rows a search waits for the refresh rather than flat-scan them.
INLINE_REFRESH_ROWS = 20_000
# A background refresh (compaction plus index update) starts only once this many rows wait;
# smaller tails are searched by a flat scan, correctly, and the scheduler's maintain() folds them in.
BACKGROUND_REFRESH_ROWS = 1_000


class MemoryUnavailable(RuntimeError):
    """Semantic memory cannot be read or written now (storage missing, corrupt or failing).

    Callers degrade (e.g. to keyword search in SQLite); ``Memory.maintain()`` rebuilds what is broken.
    """


def _note_fields() -> list[pa.Field]:
    """What every stored note has, searched or not."""
    return [
        pa.field("id", pa.string(), nullable=False),
        pa.field("scope", pa.string(), nullable=False),
        pa.field("ref", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]


def notes_schema(dim: int, embedder: str) -> pa.Schema:
    """Schema of the ``notes`` table; the embedder's name rides in the schema metadata."""
    return pa.schema(
        [
            *_note_fields(),
            pa.field("speaker", pa.string(), nullable=False),
            pa.field("episode", pa.string(), nullable=False),
            pa.field("seq", pa.int64(), nullable=False),
            pa.field("part", pa.int32(), nullable=False),
            pa.field("body", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        ],
        metadata={_META_EMBEDDER: embedder.encode()},
    )


def quiet_schema() -> pa.Schema:
    """Schema of the ``quiet`` table (kept, never searched)."""
    return pa.schema([*_note_fields(), pa.field("seq", pa.int64(), nullable=False)])


def episodes_schema() -> pa.Schema:
    """Schema of the ``episodes`` table: a summary per closed episode, searched by full text."""
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("scope", pa.string(), nullable=False),
            pa.field("start", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("end", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("turns", pa.int32(), nullable=False),
            pa.field("summarizer", pa.string(), nullable=False),
            pa.field("body", pa.string(), nullable=False),
        ]
    )


def scope_is(scope: str) -> Expr:
    """Filter on one scope, built as an expression so no value is ever spliced into SQL."""
    return col("scope") == lit(scope)


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


def _segments(index: Any) -> int:
    """How many segments an index is in (each incremental update of a vector index adds one)."""
    return int(getattr(index, "num_segments", None) or 1)


def _rq_bits(index: Any) -> int | None:
    """Bits per dimension of a RaBitQ vector index (None for another kind of index)."""
    compression = (getattr(index, "index_details", None) or {}).get("compression") or {}
    return int(compression["num_bits"]) if compression.get("type") == "rq" else None


def with_vectors(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as dicts, each ``vector`` a float32 numpy row (converting vectors to lists costs ms)."""
    if "vector" not in table.column_names:
        rows: list[dict[str, Any]] = table.to_pylist()
        return rows
    column = table.column("vector").combine_chunks()
    dim = column.type.list_size
    matrix = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    rows = table.drop_columns(["vector"]).to_pylist()
    for row, vector in zip(rows, matrix, strict=True):
        row["vector"] = vector
    return rows


@contextlib.contextmanager
def _storage() -> Iterator[None]:
    """Turn any failure of LanceDB into ``MemoryUnavailable`` (cancellation passes through)."""
    try:
        yield
    except MemoryUnavailable:
        raise
    except Exception as exc:
        raise MemoryUnavailable(f"semantic memory storage failed: {exc}") from exc


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
    """The three tables. Construct with :meth:`open`; close with :meth:`close`."""

    def __init__(self, root: Path, conn: Any, dim: int, embedder: str, auto_refresh: bool = True) -> None:
        self._root = root
        self._conn = conn
        self._auto_refresh = auto_refresh
        self._dim = dim
        self._embedder_name = embedder
        self._tables: dict[str, Any] = {}
        self._schema = notes_schema(dim, embedder)
        self._write = asyncio.Lock()
        self._gate = _Gate()
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
            conn = await lancedb.connect_async(str(root))
        store = cls(root, conn, dim, embedder, auto_refresh)
        with _storage():
            await store._open_tables()
        return store

    async def _open_tables(self) -> None:
        existing = set((await self._conn.list_tables()).tables)
        schemas = {
            TABLE: notes_schema(self._dim, self._embedder_name),
            QUIET: quiet_schema(),
            EPISODES: episodes_schema(),
        }
        for name, schema in schemas.items():
            if name in existing:
                self._tables[name] = await self._conn.open_table(name)
            else:
                self._tables[name] = await self._conn.create_table(name, schema=schema)
        self._schema = await self._tables[TABLE].schema()
        if "body" not in self._schema.names:
            await self._migrate()
        await self._ensure_indexes()
        await self._load_scopes()

    async def _load_scopes(self, *names: str) -> None:
        """Read which scopes the searched tables hold (~20 ms at 100k rows, ad hoc); callers hold the write lock."""
        for name in names or (TABLE, EPISODES):
            column = (await self._tables[name].query().select(["scope"]).to_arrow()).column("scope")
            self._scopes[name] = set(pc.unique(column).to_pylist())

    async def _migrate(self) -> None:
        """Rewrite a ``notes`` table of the previous version (no body, speaker, episode, seq, part).

        Vectors are kept; each note becomes its own indexed text, its speaker is read from its text,
        a scope's notes form one legacy episode, in the order of their dates.
        """
        old = await self._tables[TABLE].query().to_arrow()
        embedder = (self._schema.metadata or {}).get(_META_EMBEDDER, b"").decode() or self._embedder_name
        dim = int(self._schema.field("vector").type.list_size)
        rows = sorted(old.drop_columns(["vector"]).to_pylist(), key=lambda r: (r["scope"], r["at"], r["id"]))
        order = {note_id: i for i, note_id in enumerate(old.column("id").to_pylist())}
        vectors = old.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
        seq: dict[str, int] = {}
        for row in rows:
            seq[row["scope"]] = seq.get(row["scope"], -1) + 1
            row.update(
                speaker=parse(row["text"]).speaker,
                episode=f"legacy:{row['scope']}",
                seq=seq[row["scope"]],
                part=0,
                body=row["text"],
            )
        schema = notes_schema(dim, embedder)
        columns: dict[str, Any] = {name: [row[name] for row in rows] for name in schema.names if name != "vector"}
        kept = vectors[[order[row["id"]] for row in rows]] if rows else np.empty((0, dim), np.float32)
        flat = pa.array(np.ascontiguousarray(kept, dtype=np.float32).ravel(), type=pa.float32())
        columns["vector"] = pa.FixedSizeListArray.from_arrays(flat, dim)
        table = pa.Table.from_pydict(columns, schema=schema)
        self._tables[TABLE].close()
        self._tables[TABLE] = await self._conn.create_table(TABLE, data=table, mode="overwrite")
        self._schema = await self._tables[TABLE].schema()
        await self._ensure_indexes(replace=True)
        log.warning("semantic memory: migrated %d note(s) to the current layout", len(rows))

    @property
    def embedder(self) -> str:
        """Name of the embedder whose vectors are stored."""
        return (self._schema.metadata or {}).get(_META_EMBEDDER, b"").decode()

    @property
    def dim(self) -> int:
        """Vector length of the tables."""
        return int(self._schema.field("vector").type.list_size)

    @property
    def _notes(self) -> Any:
        return self._tables[TABLE]

    async def _ensure_indexes(self, replace: bool = False) -> None:
        wanted: dict[str, list[tuple[str, BTree | FTS]]] = {
            TABLE: [("scope", BTree()), ("episode", BTree()), ("ref", BTree()), ("body", FTS())],
            QUIET: [("scope", BTree()), ("ref", BTree())],
            EPISODES: [("scope", BTree()), ("body", FTS())],
        }
        for name, indexes in wanted.items():
            table = self._tables[name]
            have = {index.columns[0] for index in await table.list_indices()}
            for column, config in indexes:
                if replace or column not in have:
                    await table.create_index(column, config=config, replace=True)

    async def _vector_index(self, max_segments: int = MAX_VECTOR_SEGMENTS) -> VectorIndex:
        """Build the ANN index once the table is big enough, or anew when it is of an older kind or in
        more than ``max_segments`` segments; report its state."""
        current = [index for index in await self._notes.list_indices() if index.columns == ["vector"]]
        if current and _rq_bits(current[0]) == RQ_BITS and _segments(current[0]) <= max_segments:
            return "current"
        if not current and await self._notes.count_rows() < VECTOR_INDEX_MIN_ROWS:
            return "none"
        config = IvfRq(distance_type="cosine", num_bits=RQ_BITS)
        await self._notes.create_index("vector", config=config, replace=True)
        return "built"

    def _check_present(self) -> None:
        # A deleted folder is not noticed by LanceDB's cached handles (a write even "succeeds" into
        # a half-recreated directory): look before writing.
        for name in (TABLE, QUIET, EPISODES):
            if not (self._root / f"{name}.lance").is_dir():
                raise MemoryUnavailable(f"semantic memory storage is missing: {self._root / name}.lance")

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
                if await self._vector_index() == "built":
                    await self._notes.optimize()  # fragments under the old index's segments merge only now
            self._pending -= folded

    async def delete(self, where: Expr) -> int:
        """Delete matching notes (every part) and quiet notes; returns how many notes."""
        async with self._write:
            with _storage():
                notes = int(await self._notes.count_rows((where & (col("part") == lit(0))).to_sql()))
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
                await self._tables[EPISODES].delete((col("id") == lit(episode)).to_sql())
                await self._load_scopes(EPISODES)

    async def optimize(self, prune: bool) -> StoreStats:
        """Compact, update indexes and, with ``prune``, delete every old version's files now."""
        async with self._write:
            return await self._optimize_locked(prune)

    async def _optimize_locked(self, prune: bool) -> StoreStats:
        cleanup = timedelta(0) if prune else None
        passes = [await self._compact(cleanup, (TABLE, QUIET, EPISODES))]
        self._pending = 0
        with _storage():
            # Outside the gate: building the index takes seconds at 100k rows, and searches go on.
            # Maintenance leaves it in one segment, so the notes compact into one fragment.
            index = await self._vector_index(max_segments=1)
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
                    for name, data, schema in (
                        (TABLE, new_notes, notes_schema(dim, embedder)),
                        (EPISODES, new_episodes, episodes_schema()),
                    ):
                        old = self._tables[name]
                        self._tables[name] = await self._conn.create_table(
                            name, data=data.cast(schema), mode="overwrite"
                        )
                        old.close()
                    self._schema = await self._notes.schema()
                    self._dim = dim
                    self._embedder_name = embedder
                    await self._ensure_indexes(replace=True)
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
            for table in self._tables.values():
                with contextlib.suppress(Exception):  # a broken handle may fail to close; it is dropped
                    table.close()
            self._tables.clear()
            with _storage():
                self._root.mkdir(parents=True, exist_ok=True)
                for name in (TABLE, QUIET, EPISODES):
                    path = self._root / f"{name}.lance"
                    if path.exists():
                        await asyncio.to_thread(shutil.rmtree, path)
                self._conn.close()
                self._conn = await lancedb.connect_async(str(self._root))
                self._schema = notes_schema(self._dim, self._embedder_name)
                await self._open_tables()
            self._pending = 0

    async def index_lag(self) -> int:
        """Rows not yet in the most out-of-date index of ``notes`` (0 when every index is current)."""
        with _storage():
            lags = [index.num_unindexed_rows for index in await self._notes.list_indices()]
        return max(lags, default=0)

    # -- reads ---------------------------------------------------------------------------------
    async def count(self, scope: str | None = None) -> int:
        """Notes (not chunks) in one scope, or in all of them, quiet ones included."""
        first = col("part") == lit(0)
        where = first if scope is None else scope_is(scope) & first
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

        def build(source: Any, where: Expr | None) -> Any:
            query = source.query().nearest_to(vector).distance_type("cosine")
            if where is not None:
                query = query.where(where)
            # With the ANN index, re-score the best candidates on full vectors, so ``_distance``
            # is the exact cosine distance. No effect on an exact scan.
            return query.limit(limit).refine_factor(REFINE_FACTOR).select([*COLUMNS, "_distance"])

        return await self._search(table, scope, build)

    async def text_search(self, text: str, scope: str, limit: int, table: str = TABLE) -> list[dict[str, Any]]:
        """BM25 full-text matches on ``body`` within one scope; the query is taken as plain terms.

        A note comes with every column and its vector; an episode with its id and scope only (recall
        scores turns by their episode's match; its summary text is long and not needed).
        """
        columns = [*COLUMNS, "vector"] if table == TABLE else ["id", "scope"]

        def build(source: Any, where: Expr | None) -> Any:
            query = source.query().nearest_to_text(text, columns="body")
            if where is not None:
                query = query.where(where)
            return query.limit(limit).select([*columns, "_score"])

        return await self._search(table, scope, build)

    async def _search(self, table: str, scope: str, build: Callable[[Any, Expr | None], Any]) -> list[dict[str, Any]]:
        """Run ``build(table, filter)``, unfiltered when ``scope`` is the only scope the table holds.

        The scope prefilter costs ~4 ms at 100k rows (an ad-hoc timing of the vector search alone:
        11.6 ms p50 with it, 7.9 ms without). Whether it is needed is known from what this process wrote; should the
        table hold a scope it does not know of (rows written by another process), a row of it in
        the result shows it, and the search is made again, filtered.
        """
        await self._before_search()
        async with self._gate.shared():  # build inside: a rewrite may swap the table
            with _storage():
                source = self._tables[table]
                if self._scopes[table] <= {scope}:
                    result = await build(source, None).to_arrow()
                    others = set(pc.unique(result.column("scope")).to_pylist()) - {scope}
                    if not others:
                        return with_vectors(result)
                    self._scopes[table] |= others
                result = await build(source, scope_is(scope)).to_arrow()
        return with_vectors(result)

    async def close(self) -> None:
        """Finish a running refresh, then release the tables and connection."""
        if self._refresh_task is not None:
            await asyncio.gather(self._refresh_task, return_exceptions=True)
        for table in self._tables.values():
            with contextlib.suppress(Exception):  # closing a handle to deleted files must not mask the exit
                table.close()
        self._conn.close()
