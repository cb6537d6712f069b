"""How a table of semantic memory is searched within one scope: by nearest vector or by BM25 full text.

A search in the only scope a table holds runs without the scope prefilter, which costs ~4 ms at 100k
rows (an ad-hoc timing of the vector search alone: 11.6 ms p50 with it, 7.9 ms without). Should the
table hold a scope the caller did not know of (rows written by another process), a row of it in the
result shows it, and the search is made again, filtered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from memory.semantic.filters import scope_is
from memory.semantic.indexes import REFINE_FACTOR
from memory.semantic.tables import COLUMNS, TABLE

if TYPE_CHECKING:
    from lancedb.expr import Expr

Build = Callable[[Any, "Expr | None"], Any]
"""Makes the query on a table handle, with or without a filter."""


def nearest(vector: np.ndarray, limit: int) -> Build:
    """The ``limit`` rows nearest ``vector`` by cosine distance, every note column and ``_distance``."""

    def build(source: Any, where: Expr | None) -> Any:
        query = source.query().nearest_to(vector).distance_type("cosine")
        if where is not None:
            query = query.where(where)
        # With the ANN index, re-score the best candidates on full vectors, so ``_distance``
        # is the exact cosine distance. No effect on an exact scan.
        return query.limit(limit).refine_factor(REFINE_FACTOR).select([*COLUMNS, "_distance"])

    return build


def matching(text: str, limit: int, table: str) -> Build:
    """The ``limit`` best BM25 matches of ``text`` (plain terms) on ``body``, with ``_score``.

    A note comes with every column and its vector; an episode with its id and scope only (recall
    scores turns by their episode's match; its summary text is long and not needed).
    """
    columns = [*COLUMNS, "vector"] if table == TABLE else ["id", "scope"]

    def build(source: Any, where: Expr | None) -> Any:
        query = source.query().nearest_to_text(text, columns="body")
        if where is not None:
            query = query.where(where)
        return query.limit(limit).select([*columns, "_score"])

    return build


async def in_scope(source: Any, build: Build, scope: str, known: set[str]) -> tuple[pa.Table, set[str]]:
    """Run ``build`` on ``source`` for ``scope``; ``known`` are the scopes the table may hold.

    Returns the result and the scopes found that ``known`` lacked (the search then ran filtered).
    """
    if known <= {scope}:
        result: pa.Table = await build(source, None).to_arrow()
        others = set(pc.unique(result.column("scope")).to_pylist()) - {scope}
        if not others:
            return result, set()
    else:
        others = set()
    return await build(source, scope_is(scope)).to_arrow(), others
