"""How semantic memory answers a question: the searches it runs and how their candidates become hits.

Turns are searched by vector and by BM25, episode summaries by BM25; every candidate turn is scored
by :mod:`memory.semantic.ranking` from those scores and from the speakers and the period the
question names (:mod:`memory.semantic.query`). Only turns are returned, never summaries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from memory.semantic import ranking
from memory.semantic.contracts import Embedder, EmbeddingRefused, MemoryUnavailable
from memory.semantic.filters import among, first_part
from memory.semantic.notes import Hit, check_scope
from memory.semantic.query import MAX_QUERY_EMBED_CHARS, MAX_QUERY_TEXT_CHARS, capped, speakers_named, time_window
from memory.semantic.store import SemanticStore
from memory.semantic.tables import EPISODES

MAX_K = 1_000
RecallMode = Literal["hybrid", "dense", "text"]


def check_question(query: object, k: object, scope: object, mode: object) -> str:
    """The query without NULs; ``ValueError`` for an empty query, a ``k`` out of range, an unknown mode or scope."""
    if not isinstance(query, str) or not query.replace("\x00", "").strip():
        raise ValueError("query is empty")
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ValueError(f"k must be an integer from 1 to {MAX_K}")
    if mode not in ("hybrid", "dense", "text"):
        raise ValueError(f"unknown recall mode {mode!r}")
    check_scope(scope)
    return query.replace("\x00", "")


class Retrieval:
    """Runs one store's searches for a question and ranks what they find."""

    def __init__(self, store: SemanticStore, embedder: Embedder, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._embedder = embedder
        self._clock = clock

    async def _embedded(self, query: str) -> np.ndarray:
        try:
            return await self._embedder.embed_query(capped(query, MAX_QUERY_EMBED_CHARS))
        except (MemoryUnavailable, ValueError, EmbeddingRefused):
            raise  # a refused (budgeted) embedding is not a broken index: no rebuild for it
        except Exception as exc:
            raise MemoryUnavailable(f"the embedder failed: {exc}") from exc

    async def recall(self, query: str, k: int, scope: str, mode: RecallMode, speakers: set[str]) -> list[Hit]:
        """The ``k`` best hits of ``scope`` for a checked ``query``; ``speakers`` are the scope's known speakers."""
        depth = max(ranking.POOL, k)
        use_dense, use_text, full = mode != "text", mode != "dense", mode == "hybrid"
        text = capped(query, MAX_QUERY_TEXT_CHARS)

        async def lexical(table: str, limit: int) -> list[dict[str, Any]]:
            return await self._store.text_search(text, scope, limit, table=table)

        async def nothing() -> list[dict[str, Any]]:
            return []

        # The searches start once the query is embedded: with the previous two-thread engine, run
        # beside the embedding they made the whole recall slower; with the one-thread engine the
        # full-text searches beside it gained nothing (ad hoc, paired in one process on a 100k store:
        # p50 21.35 vs 21.18 ms, p95 25.83 vs 25.66 ms).
        vector = await self._embedded(query)
        dense_limit = max(ranking.DENSE_POOL, k)
        try:
            async with asyncio.TaskGroup() as group:
                turn_dense = group.create_task(
                    self._store.vector_search(vector, scope, dense_limit, table="notes") if use_dense else nothing()
                )
                turn_text = group.create_task(lexical("notes", depth) if use_text else nothing())
                episode_text = group.create_task(lexical(EPISODES, ranking.EPISODE_POOL) if full else nothing())
        except ExceptionGroup as failed:
            raise _one_error(failed) from None
        scored = ranking.score(
            list(ranking.candidates(turn_dense.result(), turn_text.result()).values()),
            vector,
            query,
            speakers=speakers_named(query, speakers) if full else set(),
            window=time_window(query, self._clock()) if full else None,
            episodes=ranking.episode_scores(episode_text.result()),
            weights=(ranking.DENSE_WEIGHT if use_dense else 0.0, ranking.TEXT_WEIGHT if use_text else 0.0),
            asking=ranking.QUESTION_PENALTY if full else 0.0,
            floor=full,
        )
        top = scored[:k]
        missing = [row["id"] for row, _ in top if row["part"] != 0]
        if missing:
            texts = await self._texts(scope, missing)
            top = [({**row, "text": texts.get(row["id"], row["text"])}, score) for row, score in top]
        return [_hit(row, score) for row, score in top]

    async def _texts(self, scope: str, ids: list[str]) -> dict[str, str]:
        rows = (await self._store.scan(scope, ["id", "text"], first_part() & among("id", ids))).to_pylist()
        return {r["id"]: r["text"] for r in rows}


def _one_error(group: ExceptionGroup) -> Exception:
    """The error to raise for failed parallel searches: storage trouble first, as one ``MemoryUnavailable``."""
    unavailable, rest = group.split(MemoryUnavailable)
    if unavailable is not None:
        return unavailable.exceptions[0] if isinstance(unavailable.exceptions[0], Exception) else unavailable
    assert rest is not None
    first = rest.exceptions[0]
    return first if isinstance(first, Exception) else rest


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
