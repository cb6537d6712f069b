"""Which indexes the semantic tables carry, and when the vector (ANN) index is built or built anew.

Index freshness (checked against lancedb 0.40): rows appended after an index was built are still
searched, by a flat scan of the unindexed part, so results are correct without ``optimize()``;
only speed degrades as that tail grows. ``memory.semantic.store`` decides when to fold the tail in.
LanceDB's index classes are imported when an index is made, not when this module is.
"""

from __future__ import annotations

from typing import Any, Literal

from memory.semantic.tables import EPISODES, QUIET, TABLE

VectorIndex = Literal["none", "current", "built"]
"""The vector index after a check: absent (too few rows), up to date, or built just now."""

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


def _wanted() -> dict[str, list[tuple[str, Any]]]:
    from lancedb.index import FTS, BTree

    return {
        TABLE: [("scope", BTree()), ("episode", BTree()), ("ref", BTree()), ("body", FTS())],
        QUIET: [("scope", BTree()), ("ref", BTree())],
        EPISODES: [("scope", BTree()), ("body", FTS())],
    }


async def ensure_indexes(tables: dict[str, Any], replace: bool = False) -> None:
    """Create each table's scalar and full-text indexes that are missing (all of them with ``replace``)."""
    for name, indexes in _wanted().items():
        table = tables[name]
        have = {index.columns[0] for index in await table.list_indices()}
        for column, config in indexes:
            if replace or column not in have:
                await table.create_index(column, config=config, replace=True)


def _segments(index: Any) -> int:
    """How many segments an index is in (each incremental update of a vector index adds one)."""
    return int(getattr(index, "num_segments", None) or 1)


def _rq_bits(index: Any) -> int | None:
    """Bits per dimension of a RaBitQ vector index (None for another kind of index)."""
    compression = (getattr(index, "index_details", None) or {}).get("compression") or {}
    return int(compression["num_bits"]) if compression.get("type") == "rq" else None


async def vector_index(notes: Any, max_segments: int = MAX_VECTOR_SEGMENTS) -> VectorIndex:
    """Build the ANN index of ``notes`` once the table is big enough, or anew when it is of an older kind
    or in more than ``max_segments`` segments; report its state."""
    from lancedb.index import IvfRq

    current = [index for index in await notes.list_indices() if index.columns == ["vector"]]
    if current and _rq_bits(current[0]) == RQ_BITS and _segments(current[0]) <= max_segments:
        return "current"
    if not current and await notes.count_rows() < VECTOR_INDEX_MIN_ROWS:
        return "none"
    await notes.create_index("vector", config=IvfRq(distance_type="cosine", num_bits=RQ_BITS), replace=True)
    return "built"
