"""Public semantic-memory API: ``open_memory``, ``Note``, ``Hit``, ``Memory``.

Recall is hybrid: a cosine vector search and a BM25 full-text search, both filtered by scope inside
LanceDB, fused with reciprocal rank fusion (k=60). Input rules, enforced for a whole batch before
anything is written:

- text must contain a non-whitespace character (``ValueError("note text is empty")``) and be at
  most ``MAX_TEXT_CHARS`` characters; NUL characters are removed, everything else (emoji, RTL,
  combining marks, other controls) is stored exactly as given; lone surrogates are rejected;
  only the first ``MAX_EMBED_CHARS`` characters are embedded, the whole text is full-text indexed;
- ``at`` must be a datetime; a naive one is taken to be UTC, an aware one is converted to UTC;
- ``scope``, ``source`` and ``ref`` (when given) must be non-empty strings; a missing ``ref`` is
  set to the note's generated id.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from lancedb.expr import col, lit

from memory.db import utcnow
from memory.embedder import Embedder, make_embedder
from memory.semantic import (
    COLUMNS,
    SemanticStore,
    StoreStats,
    notes_schema,
    reciprocal_rank_fusion,
    scope_is,
)
from memory.settings import EmbeddingsSettings

MAX_TEXT_CHARS = 100_000
# Only the head of a long note is embedded (about one 512-token window; a window costs 2-3 s on a
# small CPU, and a vector averaged over many windows says little). The whole text stays searchable
# through the BM25 index.
MAX_EMBED_CHARS = 2_000
MAX_K = 1_000
RRF_K = 60
# How deep each retriever's list goes into the fusion. Deep lists let weak agreements (both
# retrievers ranking a note ~30th) outvote a note one retriever ranks near the top.
CANDIDATES_MIN = 20
CANDIDATES_PER_K = 2

MaintenanceStats = StoreStats
RecallMode = Literal["hybrid", "dense", "text"]


@dataclass(frozen=True)
class Note:
    """Something to remember. ``ref`` is the caller's handle (e.g. a message id); None means generated."""

    text: str
    source: str = "chat"
    at: datetime = field(default_factory=utcnow)
    scope: str = "default"
    ref: str | None = None


@dataclass(frozen=True)
class Hit:
    """One recalled note; ``score`` is the fused RRF score (higher is better)."""

    id: str
    ref: str
    text: str
    score: float
    at: datetime
    source: str
    scope: str


class InvalidNote(ValueError):
    """A note was refused; ``index`` is its position in the batch. Nothing of the batch was written."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


def _check_scope(scope: object) -> str:
    if not isinstance(scope, str) or not scope.strip():
        raise ValueError("scope must be a non-empty string")
    return scope


def _check_name(value: object, what: str, index: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidNote(f"note {what} must be a non-empty string", index)
    return value


def _clean(note: Note, index: int) -> dict[str, Any]:
    if not isinstance(note, Note):
        raise TypeError(f"expected a Note, got {type(note).__name__}")
    if not isinstance(note.text, str):
        raise InvalidNote("note text must be a string", index)
    text = note.text.replace("\x00", "")
    if not text.strip():
        raise InvalidNote("note text is empty", index)
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidNote(f"note text is {len(text)} characters long; the limit is {MAX_TEXT_CHARS}", index)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidNote(f"note text is not valid Unicode (lone surrogate at {exc.start})", index) from None
    if not isinstance(note.at, datetime):
        raise InvalidNote("note at must be a datetime", index)
    at = note.at.replace(tzinfo=UTC) if note.at.tzinfo is None else note.at.astimezone(UTC)
    note_id = str(uuid.uuid4())
    return {
        "id": note_id,
        "scope": _check_name(note.scope, "scope", index),
        "ref": note_id if note.ref is None else _check_name(note.ref, "ref", index),
        "source": _check_name(note.source, "source", index),
        "text": text,
        "at": at,
    }


class Memory:
    """Semantic memory over one LanceDB directory. Construct with :func:`open_memory`."""

    def __init__(self, store: SemanticStore, embedder: Embedder) -> None:
        self._store = store
        self._embedder = embedder

    async def _check_embedder(self) -> None:
        dim = await self._embedder.dimension()
        if self._store.embedder != self._embedder.name or self._store.dim != dim:
            raise RuntimeError(
                f"semantic memory holds vectors from {self._store.embedder} ({self._store.dim}-d) but the "
                f"embedder is {self._embedder.name} ({dim}-d); run Memory.reindex() to re-embed"
            )

    async def add(self, note: Note) -> str:
        """Remember one note; returns its id."""
        return (await self.add_many([note]))[0]

    async def add_many(self, notes: Sequence[Note]) -> list[str]:
        """Remember notes in one write; returns their ids in order. All or nothing."""
        rows = [_clean(note, i) for i, note in enumerate(notes)]
        if not rows:
            return []
        await self._check_embedder()
        vectors = await self._embedder.embed_passages([row["text"][:MAX_EMBED_CHARS] for row in rows])
        await self._store.add(_to_arrow(rows, vectors, self._store.dim, self._store.embedder))
        return [row["id"] for row in rows]

    async def recall(
        self, query: str, k: int = 10, scope: str = "default", *, mode: RecallMode = "hybrid"
    ) -> list[Hit]:
        """The ``k`` notes of ``scope`` most relevant to ``query``, best first ([] if none).

        ``mode`` "dense" or "text" runs one retriever alone (for diagnosis and benchmarks); the
        score is then still the RRF score of that single ranking.
        """
        if not isinstance(query, str) or not query.replace("\x00", "").strip():
            raise ValueError("query is empty")
        if not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise ValueError(f"k must be an integer from 1 to {MAX_K}")
        if mode not in ("hybrid", "dense", "text"):
            raise ValueError(f"unknown recall mode {mode!r}")
        _check_scope(scope)
        await self._check_embedder()
        depth = max(CANDIDATES_MIN, CANDIDATES_PER_K * k)

        async def dense_search() -> list[dict[str, Any]]:
            if mode == "text":
                return []
            vector = await self._embedder.embed_query(query)
            return await self._store.vector_search(vector, scope, depth)

        async def text_search() -> list[dict[str, Any]]:
            return [] if mode == "dense" else await self._store.text_search(query, scope, depth)

        # Full-text search needs no vector, so it runs while the query is being embedded.
        async with asyncio.TaskGroup() as group:
            dense_task = group.create_task(dense_search())
            text_task = group.create_task(text_search())
        dense, lexical = dense_task.result(), text_task.result()
        by_id = {row["id"]: row for row in [*dense, *lexical]}
        fused = reciprocal_rank_fusion([[r["id"] for r in dense], [r["id"] for r in lexical]], k=RRF_K)
        return [_hit(by_id[key], score) for key, score in fused[:k]]

    async def forget(self, ref: str | None = None, id: str | None = None, scope: str = "default") -> int:
        """Delete the notes of ``scope`` with this ref and/or id; returns how many were removed."""
        if ref is None and id is None:
            raise ValueError("forget needs a ref or an id")
        where = scope_is(_check_scope(scope))
        if ref is not None:
            where = where & (col("ref") == lit(ref))
        if id is not None:
            where = where & (col("id") == lit(id))
        return await self._store.delete(where)

    async def count(self, scope: str | None = None) -> int:
        """How many notes one scope (or, with None, all scopes) holds."""
        return await self._store.count(scope)

    async def maintain(self) -> MaintenanceStats:
        """Compact fragments, bring indexes up to date and delete old versions' files."""
        return await self._store.optimize(prune=True)

    async def reindex(self, reembed: bool = False) -> MaintenanceStats:
        """Rewrite the table from the live notes and rebuild every index (including the ANN one).

        Notes are re-embedded when the current embedder differs from the stored one (or ``reembed``);
        writes wait until that is done. The rewrite also purges forgotten notes from the files.
        """
        dim = await self._embedder.dimension()
        name = self._embedder.name
        reembed = reembed or self._store.embedder != name or self._store.dim != dim

        async def transform(table: pa.Table) -> pa.Table:
            if not reembed:
                return table
            rows = table.to_pylist()
            vectors = await self._embedder.embed_passages([row["text"][:MAX_EMBED_CHARS] for row in rows])
            return _to_arrow(rows, vectors, dim, name)

        return await self._store.rewrite(transform, with_vectors=not reembed, dim=dim, embedder=name)

    async def refresh(self) -> None:
        """Wait until every written note is in the indexes (searches find them either way)."""
        await self._store.refresh()


def _to_arrow(rows: list[dict[str, Any]], vectors: np.ndarray, dim: int, embedder: str) -> pa.Table:
    if vectors.shape != (len(rows), dim):
        raise RuntimeError(f"embedder returned shape {vectors.shape}, expected ({len(rows)}, {dim})")
    columns: dict[str, Any] = {name: [row[name] for row in rows] for name in COLUMNS}
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel(), type=pa.float32())
    columns["vector"] = pa.FixedSizeListArray.from_arrays(flat, dim)
    return pa.Table.from_pydict(columns, schema=notes_schema(dim, embedder))


def _hit(row: dict[str, Any], score: float) -> Hit:
    return Hit(
        id=row["id"],
        ref=row["ref"],
        text=row["text"],
        score=score,
        at=row["at"].astimezone(UTC),
        source=row["source"],
        scope=row["scope"],
    )


@asynccontextmanager
async def open_memory(
    data_dir: str | Path, embedder: Embedder | None = None, settings: EmbeddingsSettings | None = None
) -> AsyncIterator[Memory]:
    """Open semantic memory at ``<data_dir>/lancedb`` (created if needed) and close it on exit.

    Without ``embedder`` one is made from ``settings`` (default: the bundled local model) and
    closed on exit; a passed embedder stays the caller's.
    """
    owned = embedder is None
    chosen = make_embedder(settings) if embedder is None else embedder
    try:
        store = await SemanticStore.open(Path(data_dir) / "lancedb", await chosen.dimension(), chosen.name)
        try:
            yield Memory(store, chosen)
        finally:
            await store.close()
    finally:
        if owned:
            await chosen.aclose()
