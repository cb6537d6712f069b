"""Public semantic-memory API: ``open_memory``, ``Note``, ``Hit``, ``Memory``, ``MemoryUnavailable``.

Ingestion (``add_many``) keeps each note's text as given and indexes what the product knows around
it (``memory.semantic.turns``): the speaker named in ``[date] Speaker: text``, the previous turn of the same
episode, the episode itself (``memory.semantic.episodes``: a summary per closed episode, linked to its
turns). Noise (commands, "ok", "1"; never a remembered note) is kept and counted but never indexed. A long note is
indexed in chunks. The context of a scope survives restarts: it is read back from LanceDB. How a batch
becomes rows is in :mod:`memory.semantic.indexing`, episode summaries in :mod:`memory.semantic.summaries`.

Recall (:mod:`memory.semantic.retrieval`) searches turns by vectors and BM25 and episode summaries by
BM25, and scores every candidate turn from (``memory.semantic.query``): its vector and BM25 scores (each
normalised over the candidates), a bonus when it was said by a speaker the question names, a bonus when
it dates from a period the question names, the score of its episode's summary, and a penalty when the
turn itself ends with a question (it asks rather than tells: "What was the best part?" seldom holds the
answer). Hits below a relevance floor (no shared term and a vector match clearly weaker than the best) are
dropped: nothing is better than something wrong. Only turns are returned, never summaries.
The notes, hits and input rules are in :mod:`memory.semantic.notes`; how hits rank in
:mod:`memory.semantic.ranking`; the tables in :mod:`memory.semantic.tables` and :mod:`memory.semantic.store`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from memory.db import utcnow
from memory.semantic import indexing, turns
from memory.semantic.contracts import Embedder, EmbeddingRefused, MemoryUnavailable
from memory.semantic.embedder import make_embedder
from memory.semantic.episodes import Summarizer
from memory.semantic.filters import col, first_part, is_, lit, scope_is
from memory.semantic.notes import EmbedderUnavailable, Episode, Hit, InvalidNote, Note, check_scope, clean
from memory.semantic.retrieval import RecallMode, Retrieval, check_question
from memory.semantic.store import SemanticStore, StoreStats
from memory.semantic.summaries import EpisodeSummaries
from memory.semantic.tables import COLUMNS, QUIET, notes_table, quiet_table, with_vectors
from memory.settings import EmbeddingsSettings

if TYPE_CHECKING:
    from lancedb.expr import Expr

MaintenanceStats = StoreStats

__all__ = [
    "EmbedderUnavailable",
    "Episode",
    "Hit",
    "InvalidNote",
    "MaintenanceStats",
    "Memory",
    "MemoryUnavailable",
    "Note",
    "Summarizer",
    "open_memory",
]

log = logging.getLogger(__name__)


class Memory:
    """Semantic memory over one LanceDB directory. Construct with :func:`open_memory`."""

    def __init__(
        self,
        store: SemanticStore,
        embedder: Embedder,
        summarizer: Summarizer | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._states: dict[str, indexing.ScopeState] = {}
        self._ingest = asyncio.Lock()
        self._summaries = EpisodeSummaries(store, summarizer, self._ingest, clock)
        self._retrieval = Retrieval(store, embedder, clock)
        # Refs forgotten while this process runs: a note of one still queued for ingestion must not be
        # written after the /forget (a restart re-queues only what the log says was not forgotten).
        self._forgotten: set[tuple[str, str]] = set()

    async def _check_embedder(self) -> None:
        dim = await self._embedder.dimension()
        if self._store.embedder != self._embedder.name or self._store.dim != dim:
            raise RuntimeError(
                f"semantic memory holds vectors from {self._store.embedder} ({self._store.dim}-d) but the "
                f"embedder is {self._embedder.name} ({dim}-d); run Memory.reindex() to re-embed"
            )

    # -- ingestion -------------------------------------------------------------------------------
    async def add(self, note: Note) -> str:
        """Remember one note; returns its id."""
        return (await self.add_many([note]))[0]

    async def add_many(self, notes: Sequence[Note]) -> list[str]:
        """Remember notes, in order; returns their ids in order. All or nothing.

        Each note is stored as given. Noise (a ``/command``, or no content word: "ok", "1",
        "approve"; never a note of source ``remember:...``) is stored and counted but never indexed,
        so recall never returns it. Every other note is indexed with what is known around it: its
        speaker, its episode, and, when it replies to another speaker within ``turns.REPLY_GAP``, the
        turn it answers. Notes of one scope must come in the order they were said (across calls and
        restarts); an episode that closes is summarized before this returns. A note is stored once per
        (scope, ref): one whose ref its scope holds already is skipped, and its stored id returned.

        Raises ``InvalidNote`` for a refused note (see :func:`check_notes`), ``EmbeddingRefused``
        when a paid embedder's budget refuses, ``EmbedderUnavailable`` when the embedder fails and
        ``MemoryUnavailable`` when the storage does; nothing of the batch is written then.
        """
        rows = [clean(note, i) for i, note in enumerate(notes)]
        if not rows:
            return []
        await self._check_embedder()
        async with self._ingest:
            fresh = [
                r for r in await indexing.unstored(self._store, rows) if (r["scope"], r["ref"]) not in self._forgotten
            ]
            if not fresh:
                return [row["id"] for row in rows]
            states: dict[str, indexing.ScopeState] = {}
            for scope in dict.fromkeys(row["scope"] for row in fresh):
                state = await self._state(scope)
                states[scope] = replace(state, speakers=set(state.speakers), lines=list(state.lines))
            batch = indexing.plan(fresh, states)
            try:
                vectors = await indexing.embed_bodies(self._embedder, [unit["body"] for unit in batch.units])
            except (MemoryUnavailable, ValueError, EmbeddingRefused):
                raise
            except Exception as exc:
                raise EmbedderUnavailable(f"the embedder failed: {exc}") from exc
            # Building Arrow tables for a big batch takes tens of ms of CPU: off the loop.
            table = await asyncio.to_thread(self._notes_table, batch.units, vectors)
            await self._store.add(table, quiet_table(batch.quiet))
            self._states.update(states)
            for scope, episode, lines, start, end in batch.closed:
                await self._summaries.summarize(scope, episode, lines, start, end)
        return [row["id"] for row in rows]

    async def _state(self, scope: str) -> indexing.ScopeState:
        """The scope's ingestion state, read back from LanceDB the first time a scope is used."""
        if scope not in self._states:
            self._states[scope] = await indexing.read_state(self._store, scope, self._summaries.lines)
        return self._states[scope]

    def _notes_table(self, units: list[dict[str, Any]], vectors: Any) -> pa.Table:
        return notes_table(units, vectors, self._store.dim, self._store.embedder)

    # -- recall ------------------------------------------------------------------------------------
    async def recall(
        self, query: str, k: int = 10, scope: str = "default", *, mode: RecallMode = "hybrid"
    ) -> list[Hit]:
        """The ``k`` notes of ``scope`` most relevant to ``query``, best first ([] if none).

        ``mode`` "dense" or "text" uses one retriever alone, without episodes or bonuses (for
        diagnosis). Raises ``MemoryUnavailable`` when the storage or the embedder fails, and
        ``EmbeddingRefused`` when a paid embedder's budget refuses to embed the query.
        """
        query = check_question(query, k, scope, mode)
        await self._check_embedder()
        state = await self._state(scope)
        return await self._retrieval.recall(query, k, scope, mode, state.speakers)

    async def episodes(self, scope: str = "default") -> list[Episode]:
        """The summarized (closed) episodes of ``scope``, oldest first."""
        return await self._summaries.listed(scope)

    # -- housekeeping ------------------------------------------------------------------------------
    async def forget(self, ref: str | None = None, id: str | None = None, scope: str = "default") -> int:
        """Delete the notes of ``scope`` with this ref and/or id; returns how many were removed."""
        if ref is None and id is None:
            raise ValueError("forget needs a ref or an id")
        where = scope_is(check_scope(scope))
        if ref is not None:
            where = where & is_("ref", ref)
        if id is not None:
            where = where & is_("id", id)
        async with self._ingest:
            if ref is not None:
                self._forgotten.add((scope, ref))
            gone = (await self._store.scan(scope, ["episode", "seq", "text"], where & first_part())).to_pylist()
            removed = await self._store.delete(where)
            if gone:
                # The forgotten text must not live on in what was derived from it.
                self._states.pop(scope, None)
                await self._scrub(scope, gone)
        return removed

    async def _scrub(self, scope: str, gone: list[dict[str, Any]]) -> None:
        """Re-index the replies that carried a forgotten turn as context, and re-summarize its episodes."""
        for note in gone:
            suffix = turns.indexed_text("", turns.context_line(turns.parse(note["text"])))
            rows = (await self._store.scan(scope, ["seq"], _after(note["episode"], note["seq"]))).to_pylist()
            if not rows:
                continue
            reply = is_("episode", note["episode"]) & is_("seq", min(r["seq"] for r in rows))
            units = with_vectors(await self._store.scan(scope, [*COLUMNS, "body", "vector"], reply))
            if not any(unit["body"].endswith(suffix) for unit in units):
                continue
            for unit in units:
                unit["body"] = unit["body"].removesuffix(suffix)
            vectors = await indexing.embed_bodies(self._embedder, [u["body"] for u in units])
            await self._store.replace(reply, self._notes_table(units, vectors))
        await self._summaries.rewrite(scope, {note["episode"] for note in gone})

    async def refs(self, scope: str = "default") -> set[str]:
        """The refs of every note ``scope`` holds, noise included (~40 ms at 100k notes, off the loop)."""
        notes = await self._store.scan(check_scope(scope), ["ref"], first_part())
        quiet = await self._store.scan(scope, ["ref"], table=QUIET)
        return set(notes.column("ref").to_pylist()) | set(quiet.column("ref").to_pylist())

    async def count(self, scope: str | None = None) -> int:
        """How many notes one scope (or, with None, all scopes) holds, noise included."""
        return await self._store.count(scope)

    async def maintain(self) -> MaintenanceStats:
        """Rebuild broken storage (empty), then compact, bring indexes up to date, drop old files."""
        rebuilt = False
        if not await self._store.healthy():
            log.error("semantic memory storage is missing or corrupt; rebuilding it empty")
            await self._store.rebuild()
            self._states.clear()
            rebuilt = True
        await self._summaries.catch_up()
        stats = await self._store.optimize(prune=True)
        return replace(stats, rebuilt=rebuilt)

    async def reindex(self, reembed: bool = False) -> MaintenanceStats:
        """Rewrite the tables from the live notes and rebuild every index (including the ANN one).

        Notes are re-embedded when the current embedder differs from the stored one (or ``reembed``);
        writes wait until that is done. The rewrite also purges forgotten notes from the files.
        """
        dim = await self._embedder.dimension()
        name = self._embedder.name
        reembed = reembed or self._store.embedder != name or self._store.dim != dim

        async def transform(notes: pa.Table, episodes: pa.Table) -> tuple[pa.Table, pa.Table]:
            if not reembed:
                return notes, episodes
            rows = notes.to_pylist()
            vectors = await indexing.embed_bodies(self._embedder, [row["body"] for row in rows])
            return notes_table(rows, vectors.reshape(len(rows), dim), dim, name), episodes

        return await self._store.rewrite(transform, with_vectors=not reembed, dim=dim, embedder=name)

    async def refresh(self) -> None:
        """Wait until every written note is in the indexes and every model summary is written."""
        await self._summaries.settled()
        await self._store.refresh()

    async def aclose(self) -> None:
        """Wait for model summaries under way (their failures are logged)."""
        await self._summaries.settled()


def _after(episode: str, seq: int) -> Expr:
    """Turns of ``episode`` said after the one numbered ``seq``."""
    return is_("episode", episode) & (col("seq") > lit(seq))


@asynccontextmanager
async def open_memory(
    data_dir: str | Path,
    embedder: Embedder | None = None,
    settings: EmbeddingsSettings | None = None,
    summarizer: Summarizer | None = None,
) -> AsyncIterator[Memory]:
    """Open semantic memory at ``<data_dir>/lancedb`` (created if needed) and close it on exit.

    Without ``embedder`` one is made from ``settings`` (default: the bundled local model) and
    closed on exit; a passed embedder stays the caller's. Episode summaries are extractive; a
    ``summarizer`` (e.g. a cheap model, budgeted by the caller) rewrites each one in the background.
    """
    owned = embedder is None
    chosen = make_embedder(settings) if embedder is None else embedder
    try:
        store = await SemanticStore.open(Path(data_dir) / "lancedb", await chosen.dimension(), chosen.name)
        memory = Memory(store, chosen, summarizer)
        try:
            yield memory
        finally:
            try:
                await memory.aclose()
            finally:
                await store.close()
    finally:
        if owned:
            await chosen.aclose()
