"""The layout of semantic memory's three LanceDB tables: their names, columns and Arrow schemas, and how rows
go between Arrow and Python (vectors as numpy rows).

- ``notes``: what recall searches. One row per indexed unit: a note, or one chunk of a long note
  (``part`` 0, 1, ...; only part 0 carries the note's text). ``body`` is the indexed text (the note
  plus its context), full-text indexed and embedded into ``vector``. ``seq`` orders a scope's notes
  as they were added; ``episode`` links a turn to its episode. The embedder's name rides in the
  schema's metadata.
- ``quiet``: notes kept but never searched (commands, "ok", "1"); ``count`` and ``forget`` see
  them, ``recall`` does not.
- ``episodes``: one summary per closed episode, full-text indexed, linked to its turns by id.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

TABLE = "notes"
QUIET = "quiet"
EPISODES = "episodes"
TABLES = (TABLE, QUIET, EPISODES)
COLUMNS = ["id", "scope", "ref", "source", "text", "at", "speaker", "episode", "seq", "part"]
QUIET_COLUMNS = ["id", "scope", "ref", "source", "text", "at", "seq"]
EPISODE_COLUMNS = ["id", "scope", "start", "end", "turns", "summarizer", "body"]
EMBEDDER_KEY = b"solo_coo.embedder"


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
        metadata={EMBEDDER_KEY: embedder.encode()},
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


def embedder_of(schema: pa.Schema) -> str:
    """The name of the embedder whose vectors a ``notes`` schema holds ("" when it names none)."""
    return (schema.metadata or {}).get(EMBEDDER_KEY, b"").decode()


def vectors_column(vectors: np.ndarray, dim: int) -> pa.FixedSizeListArray:
    """A ``vector`` column from an ``(n, dim)`` matrix."""
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel(), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, dim)


def vectors_matrix(table: pa.Table) -> np.ndarray:
    """The ``vector`` column of ``table`` as an ``(n, dim)`` float32 matrix."""
    column = table.column("vector").combine_chunks()
    return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, column.type.list_size)


def notes_table(rows: list[dict[str, Any]], vectors: np.ndarray, dim: int, embedder: str) -> pa.Table:
    """A ``notes`` table of ``rows`` (every column but the vector) and their vectors, in order."""
    if vectors.shape != (len(rows), dim):
        raise RuntimeError(f"embedder returned shape {vectors.shape}, expected ({len(rows)}, {dim})")
    schema = notes_schema(dim, embedder)
    columns: dict[str, Any] = {name: [row[name] for row in rows] for name in schema.names if name != "vector"}
    columns["vector"] = vectors_column(vectors, dim)
    return pa.Table.from_pydict(columns, schema=schema)


def quiet_table(rows: list[dict[str, Any]]) -> pa.Table | None:
    """A ``quiet`` table of ``rows`` (None when there are none)."""
    if not rows:
        return None
    schema = quiet_schema()
    return pa.Table.from_pydict({name: [row[name] for row in rows] for name in schema.names}, schema=schema)


def with_vectors(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as dicts, each ``vector`` a float32 numpy row (converting vectors to lists costs ms)."""
    if "vector" not in table.column_names:
        rows: list[dict[str, Any]] = table.to_pylist()
        return rows
    matrix = vectors_matrix(table)
    rows = table.drop_columns(["vector"]).to_pylist()
    for row, vector in zip(rows, matrix, strict=True):
        row["vector"] = vector
    return rows
