"""Storage faults: a deleted or corrupt LanceDB folder gives one clear error, and maintain() rebuilds it."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import lancedb
import pyarrow as pa
import pytest

from memory import MemoryUnavailable, Note, open_memory
from tests.memory.semantic.test_semantic import HashEmbedder


async def test_deleted_folder_under_a_live_memory(tmp_path: Path) -> None:
    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        await mem.add_many(
            [
                Note("Acme pays on net 45 terms.", ref="a", at=datetime(2024, 1, 2, tzinfo=UTC)),
                Note("Globex wants a demo.", ref="g", at=datetime(2024, 2, 3, tzinfo=UTC)),
            ]
        )
        assert [h.ref for h in await mem.recall("Acme terms", k=1)] == ["a"]

        shutil.rmtree(tmp_path / "lancedb")

        with pytest.raises(MemoryUnavailable):
            await mem.recall("Acme terms", k=1)
        with pytest.raises(MemoryUnavailable):
            await mem.add(Note("written while the folder is gone", ref="lost"))
        assert issubclass(MemoryUnavailable, RuntimeError)

        stats = await mem.maintain()
        assert stats.rebuilt and stats.rows == 0
        assert await mem.count() == 0
        await mem.add_many([Note("Initech renewed for a year.", ref="i"), Note("Ana: the invoice is late", ref="n")])
        assert [h.ref for h in await mem.recall("Initech renewal", k=1)] == ["i"]
        assert (await mem.maintain()).rebuilt is False
    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        assert await mem.count() == 2
        assert [h.ref for h in await mem.recall("invoice late", k=1)] == ["n"]


async def test_missing_data_file_is_unavailable_then_rebuilt(tmp_path: Path) -> None:
    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        await mem.add_many([Note(f"note {i} on the roadmap", ref=f"r{i}") for i in range(5)])
        await mem.maintain()
        for path in (tmp_path / "lancedb" / "notes.lance" / "data").glob("*.lance"):
            path.unlink()
        with pytest.raises(MemoryUnavailable):
            await mem.recall("roadmap", k=3)
        assert (await mem.maintain()).rebuilt
        await mem.add(Note("fresh start on the roadmap", ref="fresh"))
        assert [h.ref for h in await mem.recall("roadmap", k=3)] == ["fresh"]


async def test_a_table_of_the_previous_layout_is_migrated(tmp_path: Path) -> None:
    embedder = HashEmbedder()
    old_schema = pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("scope", pa.string(), nullable=False),
            pa.field("ref", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), 16), nullable=False),
        ],
        metadata={b"solo_coo.embedder": embedder.name.encode()},
    )
    texts = ["Acme pays on net 45 terms.", "[2 Feb 2024] Ana: Globex wants a demo."]
    vectors = await embedder.embed_passages(texts)
    rows = [
        {
            "id": f"id{i}",
            "scope": "default",
            "ref": f"r{i}",
            "source": "chat",
            "text": text,
            "at": datetime(2024, 1 + i, 2, tzinfo=UTC),
            "vector": vectors[i].tolist(),
        }
        for i, text in enumerate(texts)
    ]
    conn = await lancedb.connect_async(str(tmp_path / "lancedb"))
    await conn.create_table("notes", data=pa.Table.from_pylist(rows, schema=old_schema))
    conn.close()
    async with open_memory(tmp_path, embedder=embedder) as mem:
        assert await mem.count() == 2
        hits = await mem.recall("Globex demo", k=2)
        assert hits[0].ref == "r1" and hits[0].text == texts[1] and hits[0].at == datetime(2024, 2, 2, tzinfo=UTC)
        await mem.add(Note("[3 Feb 2024] Bo: The demo is booked for Friday.", ref="r2"))
        assert [h.ref for h in await mem.recall("demo booked Friday", k=1)] == ["r2"]
