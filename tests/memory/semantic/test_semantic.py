"""Semantic memory on real LanceDB files with the real bundled embedder (no mocks)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
import pytest
from lancedb.index import IvfRq

import memory.semantic.indexes as semantic
from memory import InvalidNote, Note, open_memory
from memory.semantic.embedder import LocalEmbedder
from memory.semantic.notes import MAX_TEXT_CHARS
from memory.semantic.ranking import reciprocal_rank_fusion
from memory.semantic.store import SemanticStore
from memory.semantic.tables import TABLE, notes_schema

WHEN = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    """One model for the module: loading is cheap, but there is no reason to repeat it."""
    return LocalEmbedder()


class HashEmbedder:
    """A tiny real embedder (bag of hashed words) standing in for "another model"."""

    def __init__(self, dim: int = 16) -> None:
        self._dim = dim

    @property
    def name(self) -> str:
        return f"test/hash-{self._dim}"

    async def dimension(self) -> int:
        return self._dim

    def _one(self, text: str) -> np.ndarray:
        vector = np.full(self._dim, 1e-3, dtype=np.float32)
        for word in text.lower().split():
            vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % self._dim] += 1.0
        return vector / np.linalg.norm(vector)

    async def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._one(t) for t in texts]) if texts else np.empty((0, self._dim), np.float32)

    async def embed_query(self, text: str) -> np.ndarray:
        return self._one(text)

    async def aclose(self) -> None:
        return None


class CountingEmbedder(HashEmbedder):
    """Counts the passages it embeds."""

    passages = 0

    async def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.passages += len(texts)
        return await super().embed_passages(texts)


def lance_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((root / "lancedb").rglob("*")) if p.is_file())


async def test_public_api_round_trip(tmp_path: Path) -> None:
    async with open_memory(tmp_path) as mem:
        await mem.add_many(
            [
                Note(
                    text="Acme agreed to a 12-month retainer at 4k per month.",
                    source="chat",
                    at=WHEN,
                    scope="default",
                    ref="msg-42",
                ),
                Note(text="Lunch with the accountant moved to Tuesday.", at=WHEN, ref="msg-43"),
            ]
        )
        hits = await mem.recall("what did Acme agree to?", k=10, scope="default")
    assert (tmp_path / "lancedb").is_dir()
    assert [h.ref for h in hits][0] == "msg-42"
    top = hits[0]
    assert top.text == "Acme agreed to a 12-month retainer at 4k per month."
    assert (top.source, top.at, top.scope) == ("chat", WHEN, "default")
    assert top.score > 0 and isinstance(top.id, str)


async def test_hits_are_best_first_and_k_limits(tmp_path: Path, local: LocalEmbedder) -> None:
    texts = [
        "The quarterly tax filing is due on April 15.",
        "Remember to file the quarterly taxes before the deadline.",
        "The office coffee machine is broken again.",
        "Ana likes her coffee black.",
        "Renewed the domain name for three years.",
    ]
    async with open_memory(tmp_path, embedder=local) as mem:
        ids = await mem.add_many([Note(t, ref=f"n{i}") for i, t in enumerate(texts)])
        one = await mem.recall("when are the quarterly taxes due?", k=1)
        everything = await mem.recall("when are the quarterly taxes due?", k=50)
        coffee = await mem.recall("coffee", k=50)
    assert len(set(ids)) == 5
    assert len(one) == 1 and one[0].ref in {"n0", "n1"}
    assert {h.ref for h in everything[:2]} == {"n0", "n1"}
    # The relevance floor: nothing about coffee or domains answers a tax question.
    assert {h.ref for h in everything} == {"n0", "n1"}
    assert {h.ref for h in coffee} == {"n2", "n3"}
    scores = [h.score for h in everything]
    assert scores == sorted(scores, reverse=True)
    assert everything[0].ref == one[0].ref


async def test_paraphrase_is_found_semantically(tmp_path: Path, local: LocalEmbedder) -> None:
    distractors = [
        "Booked flights to Lisbon for the conference.",
        "The website redesign launches next week.",
        "Watered the office plants.",
        "Hired a freelancer to edit the podcast.",
        "Dentist appointment moved to Thursday.",
        "New laptop arrives on Friday.",
    ]
    async with open_memory(tmp_path, embedder=local) as mem:
        await mem.add_many([Note(t, ref=f"d{i}") for i, t in enumerate(distractors)])
        await mem.add(Note("Client agreed to pay monthly.", ref="target"))
        query = "what payment schedule did the customer accept"
        hits = await mem.recall(query, k=3)
        lexical = await mem.recall(query, k=3, mode="text")
    assert hits[0].ref == "target"
    assert "target" not in [h.ref for h in lexical]  # no shared word: only the vectors can find it


async def test_exact_code_ranks_first(tmp_path: Path, local: LocalEmbedder) -> None:
    notes = [
        Note("Invoice INV-2024-0172 to Globex for the logo work.", ref="a"),
        Note("Invoice INV-2023-0173 to Initech for hosting.", ref="b"),
        Note("Invoice INV-2024-0173 to Acme for the design sprint.", ref="target"),
        Note("Invoice INV-2024-0174 to Umbrella, still unpaid.", ref="c"),
        Note("Sent the invoice reminder to every client.", ref="d"),
    ]
    async with open_memory(tmp_path, embedder=local) as mem:
        await mem.add_many(notes)
        hits = await mem.recall("INV-2024-0173", k=5)
        lexical = await mem.recall("INV-2024-0173", k=5, mode="text")
    assert hits[0].ref == "target"
    assert lexical[0].ref == "target"


async def test_scopes_never_mix(tmp_path: Path, local: LocalEmbedder) -> None:
    sneaky = "x' OR '1'='1"
    async with open_memory(tmp_path, embedder=local) as mem:
        await mem.add_many(
            [
                Note("The launch date is June 3.", scope="acme", ref="a1"),
                Note("The launch date is June 3.", scope="globex", ref="g1"),
                Note("O'Brien wants the contract in Irish law.", scope="o'brien", ref="o1"),
            ]
        )
        acme = await mem.recall("when is the launch?", scope="acme")
        quoted = await mem.recall("contract law", scope="o'brien")
        assert await mem.recall("when is the launch?", scope=sneaky) == []
        assert await mem.recall("anything at all", scope="brand-new") == []
        assert await mem.forget(ref="g1", scope="acme") == 0  # another scope's ref is out of reach
        counts = (await mem.count("acme"), await mem.count("globex"), await mem.count())
    assert [(h.ref, h.scope) for h in acme] == [("a1", "acme")]
    assert [h.ref for h in quoted] == ["o1"]
    assert counts == (1, 1, 3)


async def test_forget_deletes_for_good(tmp_path: Path, local: LocalEmbedder) -> None:
    secret = "The alarm code for the studio is 4815-zebra-quokka."
    async with open_memory(tmp_path, embedder=local) as mem:
        ids = await mem.add_many(
            [Note(secret, ref="s"), Note("The studio opens at 8.", ref="o"), Note("Keys are with Ana.", ref="k")]
        )
        assert await mem.forget(ref="s") == 1
        assert await mem.forget(id=ids[2]) == 1
        assert await mem.forget(ref="s") == 0
        with pytest.raises(ValueError, match="ref or an id"):
            await mem.forget()
        assert await mem.count() == 1
        assert "s" not in [h.ref for h in await mem.recall("studio alarm code", k=10)]
        await mem.reindex()
    assert b"quokka" not in lance_bytes(tmp_path)  # rewritten data and indexes hold no trace
    async with open_memory(tmp_path, embedder=local) as mem:
        assert await mem.count() == 1
        assert [h.ref for h in await mem.recall("studio alarm code", k=10)] == ["o"]


async def test_data_survives_reopen(tmp_path: Path, local: LocalEmbedder) -> None:
    async with open_memory(tmp_path, embedder=local) as mem:
        await mem.add(Note("Quarterly review with Acme on the 14th.", ref="r1", at=WHEN, source="email"))
    async with open_memory(tmp_path, embedder=local) as mem:
        hits = await mem.recall("Acme review", k=1)
        assert await mem.count() == 1
    assert (hits[0].ref, hits[0].source, hits[0].at) == ("r1", "email", WHEN)


async def test_a_note_fed_again_under_its_ref_is_stored_once(tmp_path: Path) -> None:
    """A retried batch, a rebuild from the log or a restart's catch-up may feed a note again."""
    embedder = CountingEmbedder()
    long = " ".join(f"word{i}" for i in range(400))  # in several chunks
    async with open_memory(tmp_path, embedder=embedder) as mem:
        first = await mem.add_many([Note("Acme pays net 45.", ref="m1"), Note("ok", ref="m2"), Note(long, ref="m3")])
        embedded = embedder.passages
        again = await mem.add_many([Note("Acme pays net 45.", ref="m1"), Note("ok", ref="m2"), Note(long, ref="m3")])
        assert again == first and embedder.passages == embedded  # nothing embedded twice
        twice = await mem.add_many([Note("Globex pays net 30.", ref="m4"), Note("Globex pays net 30.", ref="m4")])
        assert twice[0] == twice[1]
        assert (await mem.add(Note("Acme pays net 45.", ref="m1", scope="other"))) not in first  # refs are per scope
        assert await mem.count("default") == 4 and await mem.count("other") == 1
    async with open_memory(tmp_path, embedder=embedder) as mem:  # and after a restart
        assert await mem.add(Note("Acme pays net 45.", ref="m1")) == first[0]
        assert await mem.add(Note("a note without a ref")) != await mem.add(Note("a note without a ref"))
        assert await mem.count("default") == 6
        assert [h.ref for h in await mem.recall("Acme net 45", k=10)].count("m1") == 1


async def test_bad_input_is_refused_and_nothing_is_lost(tmp_path: Path) -> None:
    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        await mem.add(Note("Existing note about invoices.", ref="keep"))
        for bad, message in [
            ("", "note text is empty"),
            (" \n\t ", "note text is empty"),
            ("\x00\x00", "note text is empty"),
            ("x" * (MAX_TEXT_CHARS + 1), "limit is 100000"),
            ("broken \ud800 surrogate", "not valid Unicode"),
        ]:
            with pytest.raises(ValueError, match=message):
                await mem.add(Note(bad))
        with pytest.raises(InvalidNote) as refused:
            await mem.add_many([Note("fine one"), Note("   "), Note("fine two")])
        assert refused.value.index == 1 and str(refused.value) == "note text is empty"
        with pytest.raises(ValueError, match="scope"):
            await mem.add(Note("ok", scope=""))
        with pytest.raises(TypeError):
            await mem.add_many(["not a note"])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="query is empty"):
            await mem.recall("  ")
        with pytest.raises(ValueError, match="k must be"):
            await mem.recall("invoices", k=0)
        assert await mem.count() == 1
        assert [h.ref for h in await mem.recall("invoices", k=1)] == ["keep"]


async def test_longest_note_is_searchable_to_its_last_word(tmp_path: Path, local: LocalEmbedder) -> None:
    filler = "The weekly status call covered hiring and the roadmap. "
    text = (filler * (MAX_TEXT_CHARS // len(filler)))[: MAX_TEXT_CHARS - 12] + " zanzibarite"
    assert len(text) == MAX_TEXT_CHARS
    async with open_memory(tmp_path, embedder=local) as mem:
        await mem.add_many([Note(text, ref="long"), Note("Short note on the roadmap.", ref="short")])
        hits = await mem.recall("zanzibarite", k=2)
    assert hits[0].ref == "long" and hits[0].text == text


async def test_unicode_and_times_are_kept_faithfully(tmp_path: Path, local: LocalEmbedder) -> None:
    texts = {
        "emoji": "Ship it 🚀👩🏽‍💻 by Friday ✅",
        "rtl": "الاجتماع مع العميل يوم الأحد",
        "combining": "Cafe\u0301 Zoe\u0308 na\u0303o",
        "cjk": "東京の顧客との契約は来月更新",
    }
    naive = datetime(2024, 5, 6, 7, 8, 9)
    plus2 = datetime(2024, 5, 6, 9, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    async with open_memory(tmp_path, embedder=local) as mem:
        await mem.add_many([Note(t, ref=r, at=naive) for r, t in texts.items()])
        await mem.add(Note("nul\x00inside", ref="nul", at=plus2))
        found = {r: (await mem.recall(t, k=1))[0] for r, t in texts.items()}
        nul = (await mem.recall("nul inside", k=1))[0]
    for ref, text in texts.items():
        assert (found[ref].ref, found[ref].text) == (ref, text)
        assert found[ref].at == naive.replace(tzinfo=UTC)  # naive means UTC
    assert (nul.text, nul.at) == ("nulinside", plus2)
    assert nul.at.utcoffset() == timedelta(0)


async def test_full_text_sees_rows_before_the_index_refresh(tmp_path: Path) -> None:
    embedder = HashEmbedder()
    store = await SemanticStore.open(tmp_path, 16, embedder.name, auto_refresh=False)
    try:
        texts = ["alpha beta", "gamma ZX-81 delta"]
        vectors = await embedder.embed_passages(texts)
        rows = pa.Table.from_pylist(
            [
                {
                    "id": f"i{i}",
                    "scope": "s",
                    "ref": f"r{i}",
                    "source": "chat",
                    "text": text,
                    "at": WHEN,
                    "speaker": "",
                    "episode": "e",
                    "seq": i,
                    "part": 0,
                    "body": text,
                    "vector": vectors[i].tolist(),
                }
                for i, text in enumerate(texts)
            ],
            schema=notes_schema(16, embedder.name),
        )
        await store.add(rows)
        assert await store.index_lag() == 2
        assert [r["ref"] for r in await store.text_search("ZX-81", "s", 5)] == ["r1"]
        await store.refresh()
        assert await store.index_lag() == 0
        assert [r["ref"] for r in await store.text_search("ZX-81", "s", 5)] == ["r1"]
    finally:
        await store.close()


async def test_other_embedder_needs_reindex(tmp_path: Path, local: LocalEmbedder) -> None:
    async with open_memory(tmp_path, embedder=local) as mem:
        await mem.add_many([Note("Ana handles the payroll.", ref="p"), Note("Bo runs marketing.", ref="m")])
    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        with pytest.raises(RuntimeError, match="reindex"):
            await mem.recall("who handles payroll")
        stats = await mem.reindex()
        assert stats.rows == 2
        assert [h.ref for h in await mem.recall("payroll", k=1)] == ["p"]
    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        assert await mem.count() == 2
        # Writes and searches during a rewrite are neither lost nor broken.
        rewrite = asyncio.create_task(mem.reindex(reembed=True))
        await mem.add_many([Note(f"written during reindex {i}") for i in range(5)])
        assert await mem.recall("payroll", k=1)
        await rewrite
        assert await mem.count() == 7


async def test_maintain_and_ann_index_keep_scopes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(semantic, "VECTOR_INDEX_MIN_ROWS", 600)
    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        await mem.add_many([Note(f"bulk note {i} word{i}", scope="bulk") for i in range(700)])
        await mem.add(Note("lonely word7 note", scope="tiny", ref="t"))
        for _ in range(3):
            await mem.add(Note("another small write", scope="tiny"))
        stats = await mem.maintain()
        hits = await mem.recall("word7", k=10, scope="tiny")
        bulk = await mem.recall("bulk note 5 word5", k=10, scope="bulk")
    assert stats.rows == 704 and stats.vector_index
    assert {h.scope for h in hits} == {"tiny"} and hits[0].ref == "t"
    assert len(bulk) == 10 and {h.scope for h in bulk} == {"bulk"}


def test_reciprocal_rank_fusion_is_deterministic() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]], k=60)
    assert [key for key, _ in fused] == ["a", "c", "b", "d"]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    assert [key for key, _ in reciprocal_rank_fusion([["x", "y"], ["y", "x"]])] == ["x", "y"]
    assert reciprocal_rank_fusion([[], []]) == []


async def test_a_scope_added_later_is_filtered_out_again(tmp_path: Path) -> None:
    """Searching the only scope a table holds skips the scope filter; nothing else may come back."""
    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        await mem.add(Note("acme renewal signed", scope="acme", ref="a"))
        assert [h.ref for h in await mem.recall("acme renewal signed", scope="acme")] == ["a"]
        # Another scope arrives with a better match for the same question: it stays out of "acme".
        await mem.add_many([Note("acme renewal signed today acme renewal signed", scope="globex", ref="g")])
        acme = await mem.recall("acme renewal signed", scope="acme")
        globex = await mem.recall("acme renewal signed", scope="globex")
        assert [(h.ref, h.scope) for h in acme] == [("a", "acme")]
        assert [(h.ref, h.scope) for h in globex] == [("g", "globex")]
        # Once the other scope is forgotten the table holds one scope again; when it comes back, it
        # is filtered again (dense and full text alike).
        assert await mem.forget(ref="g", scope="globex") == 1
        assert [h.ref for h in await mem.recall("acme renewal signed", scope="acme")] == ["a"]
        await mem.add(Note("acme renewal signed again acme renewal", scope="globex", ref="g2"))
        for mode in ("hybrid", "dense", "text"):
            hits = await mem.recall("acme renewal signed", scope="acme", mode=mode)
            assert [(h.ref, h.scope) for h in hits] == [("a", "acme")], mode


async def test_rows_another_process_wrote_never_leak_into_a_scope(tmp_path: Path) -> None:
    """Rows of a scope this process never wrote (another process's) are caught in the results."""
    embedder = HashEmbedder()
    async with open_memory(tmp_path, embedder=embedder) as mine:
        await mine.add(Note("quarterly budget review", scope="mine", ref="m"))
        assert [h.ref for h in await mine.recall("quarterly budget review", scope="mine")] == ["m"]
        async with open_memory(tmp_path, embedder=embedder) as other:
            await other.add_many([Note("quarterly budget review quarterly budget", scope="theirs", ref="t")])
            await other.add(Note("quarterly budget review", scope="theirs", ref="t2"))
        # This process's next write lands on top of the other's: its table now holds "theirs" too.
        await mine.add(Note("budget approved", scope="mine", ref="m2"))
        for mode in ("hybrid", "dense", "text"):
            hits = await mine.recall("quarterly budget review", scope="mine", mode=mode, k=10)
            assert {h.scope for h in hits} == {"mine"} and hits[0].ref == "m", mode
        theirs = await mine.recall("quarterly budget review", scope="theirs", k=10)
    assert {h.ref for h in theirs} == {"t", "t2"}


async def test_a_vector_index_of_an_older_kind_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(semantic, "VECTOR_INDEX_MIN_ROWS", 600)
    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        await mem.add_many([Note(f"bulk note {i} word{i}", scope="bulk", ref=f"b{i}") for i in range(700)])
        await mem.maintain()
    # The previous version's index: 1-bit RaBitQ codes.
    db = await lancedb.connect_async(str(tmp_path / "lancedb"))
    notes = await db.open_table(TABLE)
    await notes.create_index("vector", config=IvfRq(distance_type="cosine", num_bits=1), replace=True)
    assert await vector_index_bits(notes) == 1
    notes.close()
    db.close()
    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        stats = await mem.maintain()
        hits = await mem.recall("bulk note 5 word5", k=3, scope="bulk", mode="dense")
    db = await lancedb.connect_async(str(tmp_path / "lancedb"))
    notes = await db.open_table(TABLE)
    try:
        assert stats.vector_index and await vector_index_bits(notes) == semantic.RQ_BITS
    finally:
        notes.close()
        db.close()
    assert hits[0].ref == "b5"


async def test_a_vector_index_split_by_refreshes_is_rebuilt_and_the_notes_compacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(semantic, "VECTOR_INDEX_MIN_ROWS", 300)
    segments_seen = []
    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        await mem.add_many([Note(f"bulk note {i} word{i}", scope="bulk", ref=f"b{i}") for i in range(400)])
        await mem.refresh()
        # Chat-sized batches, each folded in by a refresh: each adds a segment to the vector index.
        for batch in range(2 * semantic.MAX_VECTOR_SEGMENTS + 1):
            notes = [
                Note(f"chat {batch} line {i} topic{batch}x{i}", scope="bulk", ref=f"c{batch}-{i}") for i in range(20)
            ]
            await mem.add_many(notes)
            await mem.refresh()
            segments_seen.append(await vector_segments(tmp_path))
        stats = await mem.maintain()
        hits = await mem.recall("chat 7 line 3 topic7x3", k=3, scope="bulk", mode="dense")
    # Rebuilt in one segment whenever a refresh takes it past the limit.
    assert max(segments_seen) == semantic.MAX_VECTOR_SEGMENTS and 1 in segments_seen, segments_seen
    assert stats.vector_index and hits[0].ref == "c7-3"
    db = await lancedb.connect_async(str(tmp_path / "lancedb"))
    notes = await db.open_table(TABLE)
    try:
        fragments = (await notes.stats())["fragment_stats"]["num_fragments"]
        assert (await vector_segments(tmp_path), fragments) == (1, 1)
    finally:
        notes.close()
        db.close()


async def vector_segments(root: Path) -> int:
    db = await lancedb.connect_async(str(root / "lancedb"))
    notes = await db.open_table(TABLE)
    try:
        [index] = [index for index in await notes.list_indices() if index.columns == ["vector"]]
        return int(index.num_segments or 1)
    finally:
        notes.close()
        db.close()


async def vector_index_bits(table: Any) -> int:
    [index] = [index for index in await table.list_indices() if index.columns == ["vector"]]
    return int(index.index_details["compression"]["num_bits"])
