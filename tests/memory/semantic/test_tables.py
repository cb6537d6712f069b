"""The tables' layout: rows to Arrow and back, a wrong vector shape refused, the previous layout migrated."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from memory.semantic.migration import migrated, needs_migration
from memory.semantic.tables import (
    EMBEDDER_KEY,
    embedder_of,
    notes_schema,
    notes_table,
    quiet_schema,
    quiet_table,
    with_vectors,
)

AT = datetime(2024, 3, 1, tzinfo=UTC)


def unit(id_: str, text: str = "Acme pays", **fields: object) -> dict[str, object]:
    """One row of the ``notes`` table (part 0 of a note of scope "s"), every column but the vector."""
    row: dict[str, object] = {"id": id_, "scope": "s", "ref": id_, "source": "chat", "text": text, "at": AT,
                              "speaker": "", "episode": "e", "seq": 0, "part": 0, "body": text}  # fmt: skip
    return {**row, **fields}


def test_rows_go_to_arrow_and_come_back_with_their_vectors() -> None:
    vectors = np.arange(8, dtype=np.float32).reshape(2, 4)
    table = notes_table([unit("n1"), unit("n2")], vectors, 4, "test/emb")
    assert table.schema.equals(notes_schema(4, "test/emb"), check_metadata=True)
    assert embedder_of(table.schema) == "test/emb" and not needs_migration(table.schema)
    back = with_vectors(table)
    assert [row["id"] for row in back] == ["n1", "n2"] and back[1]["at"] == AT
    assert np.array_equal(np.stack([row["vector"] for row in back]), vectors)
    assert quiet_table([]) is None
    quiet = quiet_table([{**unit("q1"), "seq": 3}])
    assert quiet is not None and quiet.schema.equals(quiet_schema()) and quiet.column("seq").to_pylist() == [3]


def test_vectors_of_the_wrong_shape_are_refused_before_anything_is_written() -> None:
    with pytest.raises(RuntimeError, match=r"shape \(1, 3\), expected \(2, 4\)"):
        notes_table([unit("n1"), unit("n2")], np.zeros((1, 3), np.float32), 4, "test/emb")


def test_a_notes_table_of_the_previous_layout_is_read_into_the_current_one() -> None:
    old_schema = pa.schema(
        [
            *list(quiet_schema())[:6],
            pa.field("vector", pa.list_(pa.float32(), 2), nullable=False),
        ],
        metadata={EMBEDDER_KEY: b"old/emb"},
    )
    old = pa.Table.from_pylist(
        [
            {
                "id": "late",
                "scope": "s",
                "ref": "r2",
                "source": "chat",
                "text": "Bo: later",
                "vector": [2.0, 2.0],
                "at": datetime(2024, 2, 1, tzinfo=UTC),
            },
            {
                "id": "early",
                "scope": "s",
                "ref": "r1",
                "source": "chat",
                "text": "Ana: first",
                "vector": [1.0, 1.0],
                "at": datetime(2024, 1, 1, tzinfo=UTC),
            },
            {
                "id": "other",
                "scope": "t",
                "ref": "r3",
                "source": "chat",
                "text": "plain note",
                "vector": [3.0, 3.0],
                "at": datetime(2023, 1, 1, tzinfo=UTC),
            },
        ],  # fmt: skip
        schema=old_schema,
    )
    assert needs_migration(old_schema)
    new = migrated(old, old_schema, "fallback/emb")
    assert embedder_of(new.schema) == "old/emb"
    rows = with_vectors(new)
    assert [(r["id"], r["seq"], r["speaker"], r["episode"]) for r in rows] == [
        ("early", 0, "Ana", "legacy:s"),
        ("late", 1, "Bo", "legacy:s"),
        ("other", 0, "", "legacy:t"),
    ]
    assert [r["vector"].tolist() for r in rows] == [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]
    assert all(r["body"] == r["text"] and r["part"] == 0 for r in rows)
    empty = migrated(old.slice(0, 0), old_schema.remove_metadata(), "fallback/emb")
    assert empty.num_rows == 0 and embedder_of(empty.schema) == "fallback/emb"
