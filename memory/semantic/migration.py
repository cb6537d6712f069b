"""Reading a ``notes`` table of the previous layout (no body, speaker, episode, seq, part) into the current one.

Vectors are kept; each note becomes its own indexed text, its speaker is read from its text, and a
scope's notes form one legacy episode, in the order of their dates.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from memory.semantic.tables import embedder_of, notes_table, vectors_matrix
from memory.semantic.turns import parse


def needs_migration(schema: pa.Schema) -> bool:
    """Whether a ``notes`` table has the previous layout."""
    return "body" not in schema.names


def migrated(old: pa.Table, schema: pa.Schema, default_embedder: str) -> pa.Table:
    """The rows of ``old`` (a table of the previous layout, ``schema``) in the current layout, with their vectors.

    The embedder's name is kept from ``schema`` (``default_embedder`` when it names none).
    """
    embedder = embedder_of(schema) or default_embedder
    dim = int(schema.field("vector").type.list_size)
    rows = sorted(old.drop_columns(["vector"]).to_pylist(), key=lambda r: (r["scope"], r["at"], r["id"]))
    order = {note_id: i for i, note_id in enumerate(old.column("id").to_pylist())}
    vectors = vectors_matrix(old) if old.num_rows else np.empty((0, dim), np.float32)
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
    kept = vectors[[order[row["id"]] for row in rows]] if rows else np.empty((0, dim), np.float32)
    return notes_table(rows, kept, dim, embedder)
