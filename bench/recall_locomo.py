"""Recall@5/10/20 of LoCoMo evidence turns: solo-coo's recall vs BM25 alone vs LanceDB's default hybrid.

Usage: python bench/recall_locomo.py [--data DIR] [--cache DIR] [--cv] [--live N]

The product is driven through its public API only (``open_memory``, ``add_many``, ``recall``),
fed the way a chat product is: one note per turn, in conversation order, in batches of 32 (the
ingestor's default), one scope per conversation, each note ``[8 May 2023] Caroline: text`` with the
date of the turn's session; a shared photo arrives as its description appended to the message,
``... [photo: a photo of a painting of a sunset]`` (what a chat product that describes images, or
the photo's alt text, would hand over). ``ref`` is the turn's dia_id, ``at`` the session's time.

The baselines index the very same note texts in their own LanceDB table: BM25 alone (LanceDB's
native full-text search) and LanceDB's default hybrid (native FTS + the same e5-small vectors,
fused by LanceDB's default RRF reranker).

Every question of categories 1-4 with evidence is asked; recall@k = share of its evidence turns
among the k best hits, averaged per question. Embeddings are cached on disk (keyed by model and
text), so reruns are fast; the figures do not depend on the cache. The ingestion rate that a user
sees is timed apart: ``add_many`` with the local embedder itself on the first ``--live`` turns.

``--cv`` also runs leave-one-conversation-out cross-validation of the product's scoring weights:
for each conversation, the weights are chosen on the other two from a small grid, then scored on
the held-out one.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import FTS

import memory.semantic.ranking as ranking
from memory import Memory, Note, open_memory
from memory.semantic.contracts import Embedder
from memory.semantic.embedder import LocalEmbedder

DATA = Path("/work/shared/bench/locomo-dev")
CACHE = Path.home() / ".cache" / "solo-coo-bench"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
KS = (5, 10, 20)
BATCH = 32
RETRIEVERS = ("solo-coo recall", "BM25 alone", "LanceDB hybrid")


class CachedEmbedder:
    """Wraps an embedder with an on-disk cache keyed by model, engine, kind and text.

    The engine is part of the key: the local model kept its name when its engine changed (the
    vectors are close, not equal), and a figure must come from the engine the product runs.
    """

    def __init__(self, inner: Embedder, path: Path) -> None:
        self._inner = inner
        self._path = path
        self._cache: dict[str, np.ndarray] = {}
        self._dirty = False
        if path.exists():
            with np.load(path) as data:
                self._cache = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))

    @property
    def name(self) -> str:
        return self._inner.name

    async def dimension(self) -> int:
        return await self._inner.dimension()

    def _key(self, kind: str, text: str) -> str:
        engine = getattr(self._inner, "engine", "")
        return hashlib.sha256(f"{self.name}\0{engine}\0{kind}\0{text}".encode()).hexdigest()

    async def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        keys = [self._key("p", t) for t in texts]
        missing = sorted({i for i, key in enumerate(keys) if key not in self._cache})
        if missing:
            vectors = await self._inner.embed_passages([texts[i] for i in missing])
            for i, vector in zip(missing, vectors, strict=True):
                self._cache[keys[i]] = vector
            self._dirty = True
        if not keys:
            return np.empty((0, await self.dimension()), np.float32)
        return np.stack([self._cache[key] for key in keys])

    async def embed_query(self, text: str) -> np.ndarray:
        key = self._key("q", text)
        if key not in self._cache:
            self._cache[key] = await self._inner.embed_query(text)
            self._dirty = True
        return self._cache[key]

    async def aclose(self) -> None:
        await self._inner.aclose()

    def save(self) -> None:
        if self._dirty:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._path.with_suffix(".tmp.npz")
            np.savez(tmp, keys=np.array(list(self._cache)), vectors=np.stack(list(self._cache.values())))
            tmp.replace(self._path)
            self._dirty = False


def session_time(raw: str) -> datetime:
    return datetime.strptime(raw, "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def note_text(turn: dict[str, Any], at: datetime) -> str:
    """A turn as a chat product receives it: dated, with its speaker; a photo as its description."""
    text = turn["text"]
    if turn.get("image_caption"):
        text = f"{text} [photo: {turn['image_caption']}]"
    return f"[{at.day} {at:%B %Y}] {turn['speaker']}: {text}"


def evidence_ids(raw: list[str]) -> set[str]:
    # One item in the data holds two ids joined by ";".
    return {part.strip() for item in raw for part in item.split(";") if part.strip()}


@dataclass
class Conversation:
    name: str
    notes: list[Note]
    questions: list[tuple[str, int, set[str]]]  # (question, category, evidence)


def load(data_dir: Path) -> list[Conversation]:
    out = []
    for path in sorted(data_dir.glob("conv-*.json")):
        raw = json.loads(path.read_text())
        notes = []
        for session in raw["sessions"]:
            at = session_time(session["date_time"])
            for turn in session["turns"]:
                notes.append(Note(note_text(turn, at), source="chat", at=at, scope=path.stem, ref=turn["dia_id"]))
        questions = [
            (qa["question"], qa["category"], evidence_ids(qa.get("evidence", [])))
            for qa in raw["qa"]
            if qa["category"] in CATEGORIES and evidence_ids(qa.get("evidence", []))
        ]
        out.append(Conversation(path.stem, notes, questions))
    return out


@dataclass
class Tally:
    sums: dict[int, np.ndarray] = field(default_factory=lambda: defaultdict(lambda: np.zeros(len(KS))))
    counts: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, category: int, evidence: set[str], refs: list[str]) -> None:
        self.counts[category] += 1
        self.sums[category] += [len(evidence & set(refs[:k])) / len(evidence) for k in KS]

    def overall(self) -> np.ndarray:
        total = sum(self.counts.values())
        return sum(self.sums.values(), np.zeros(len(KS))) / max(total, 1)

    def category(self, category: int) -> np.ndarray:
        return self.sums[category] / max(self.counts[category], 1)


async def ingest(mem: Memory, convs: list[Conversation]) -> tuple[float, int]:
    """Feed every conversation in order, in the ingestor's batches; returns seconds and notes."""
    started = time.perf_counter()
    count = 0
    for conv in convs:
        for start in range(0, len(conv.notes), BATCH):
            await mem.add_many(conv.notes[start : start + BATCH])
        count += len(conv.notes)
    return time.perf_counter() - started, count


async def live_ingest_rate(convs: list[Conversation], count: int) -> tuple[float, int]:
    """Notes/s of ``add_many`` with the local embedder itself (no cache) over the first turns of the data."""
    notes = [note for conv in convs for note in conv.notes][:count]
    embedder = LocalEmbedder()
    with tempfile.TemporaryDirectory() as tmp:
        async with open_memory(Path(tmp), embedder=embedder) as mem:
            started = time.perf_counter()
            for start in range(0, len(notes), BATCH):
                await mem.add_many(notes[start : start + BATCH])
            elapsed = time.perf_counter() - started
    await embedder.aclose()
    return len(notes) / elapsed, len(notes)


async def ask(mem: Memory, convs: list[Conversation]) -> dict[str, list[list[str]]]:
    """Refs recalled by the product for every question."""
    return {
        conv.name: [[h.ref for h in await mem.recall(q, k=max(KS), scope=conv.name)] for q, _, _ in conv.questions]
        for conv in convs
    }


async def baseline_refs(convs: list[Conversation], embedder: CachedEmbedder) -> dict[str, dict[str, list[list[str]]]]:
    """Refs found by LanceDB's BM25 alone and its default hybrid, over the same note texts."""
    out: dict[str, dict[str, list[list[str]]]] = {"BM25 alone": {}, "LanceDB hybrid": {}}
    with tempfile.TemporaryDirectory() as tmp:
        db = await lancedb.connect_async(tmp)
        for conv in convs:
            texts = [n.text for n in conv.notes]
            vectors = await embedder.embed_passages(texts)
            dim = vectors.shape[1]
            flat = pa.array(vectors.astype(np.float32).ravel(), type=pa.float32())
            data = pa.table(
                {
                    "ref": [n.ref for n in conv.notes],
                    "text": texts,
                    "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
                }
            )
            table = await db.create_table(conv.name, data=data)
            await table.create_index("text", config=FTS())
            bm25, hybrid = [], []
            for question, _, _ in conv.questions:
                rows = await table.query().nearest_to_text(question, columns="text").limit(max(KS)).to_arrow()
                bm25.append(rows.column("ref").to_pylist())
                vector = await embedder.embed_query(question)
                rows = await (
                    table.query().nearest_to(vector).nearest_to_text(question, columns="text").limit(max(KS)).to_arrow()
                )
                hybrid.append(rows.column("ref").to_pylist())
            out["BM25 alone"][conv.name] = bm25
            out["LanceDB hybrid"][conv.name] = hybrid
    return out


def tally(convs: list[Conversation], refs: dict[str, list[list[str]]]) -> Tally:
    result = Tally()
    for conv in convs:
        for (_, category, evidence), found in zip(conv.questions, refs[conv.name], strict=True):
            result.add(category, evidence, found)
    return result


def print_table(tallies: dict[str, Tally]) -> None:
    header = f"{'retriever':<17} {'category':<12} {'n':>4} " + " ".join(f"{'R@' + str(k):>6}" for k in KS)
    print(header)
    print("-" * len(header))
    for name, result in tallies.items():
        for category, label in CATEGORIES.items():
            n = result.counts[category]
            if n:
                print(f"{name:<17} {label:<12} {n:>4} " + " ".join(f"{v:>6.3f}" for v in result.category(category)))
        total = sum(result.counts.values())
        print(f"{name:<17} {'overall':<12} {total:>4} " + " ".join(f"{v:>6.3f}" for v in result.overall()))


# Leave-one-conversation-out: the grid spans each weight around its principled default.
GRID = {
    "SPEAKER_BONUS": (0.125, 0.25, 0.5),
    "TIME_BONUS": (0.0, 0.3, 0.6),
    "EPISODE_WEIGHT": (0.0, 0.2, 0.4),
    "QUESTION_PENALTY": (0.0, 0.2, 0.4),
}


async def cross_validate(mem: Memory, convs: list[Conversation]) -> None:
    defaults = {name: getattr(ranking, name) for name in GRID}
    results: dict[tuple[float, ...], dict[str, list[list[str]]]] = {}
    try:
        for values in itertools.product(*GRID.values()):
            for name, value in zip(GRID, values, strict=True):
                setattr(ranking, name, value)
            results[values] = await ask(mem, convs)
    finally:
        for name, value in defaults.items():
            setattr(ranking, name, value)
    print("\nleave-one-conversation-out cross-validation of", ", ".join(GRID), "over", len(results), "settings")
    held_out = Tally()
    default = tuple(defaults.values())
    for test in convs:
        train = [c for c in convs if c is not test]
        best = max(results, key=lambda v: (tally(train, results[v]).overall()[1], v == default))
        print(
            f"  held out {test.name}: chosen on the other two {dict(zip(GRID, best, strict=True))} "
            f"(their R@10 {tally(train, results[best]).overall()[1]:.3f}); on {test.name} R@10 "
            f"{tally([test], results[best]).overall()[1]:.3f}, with the defaults "
            f"{tally([test], results[default]).overall()[1]:.3f}"
        )
        for (_, category, evidence), found in zip(test.questions, results[best][test.name], strict=True):
            held_out.add(category, evidence, found)
    print(
        "  cross-validated R@5/10/20 (each conversation scored with weights chosen without it): "
        + " / ".join(f"{v:.3f}" for v in held_out.overall())
    )
    print(
        f"  defaults {dict(zip(GRID, default, strict=True))}: R@5/10/20 "
        + " / ".join(f"{v:.3f}" for v in tally(convs, results[default]).overall())
    )


async def run(data_dir: Path, cache: Path, cv: bool, live: int) -> None:
    convs = load(data_dir)
    embedder = CachedEmbedder(LocalEmbedder(), cache / "locomo-embeddings.npz")
    try:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            async with open_memory(Path(tmp), embedder=embedder) as mem:
                ingest_s, notes = await ingest(mem, convs)
                tallies = {"solo-coo recall": tally(convs, await ask(mem, convs))}
                for name, refs in (await baseline_refs(convs, embedder)).items():
                    tallies[name] = tally(convs, refs)
                elapsed = time.perf_counter() - started
                total = sum(len(c.questions) for c in convs)
                print(f"LoCoMo dev ({data_dir}): {len(convs)} conversations, {notes} turns, {total} questions")
                print_table(tallies)
                print(f"product ingestion: {notes / ingest_s:.0f} notes/s through add_many (cached embeddings)")
                if live:
                    rate, sample = await live_ingest_rate(convs, live)
                    print(
                        f"product ingestion with the local embedder (no cache): {rate:.1f} notes/s "
                        f"over the first {sample} turns, batches of {BATCH}; load average {os.getloadavg()[0]:.2f}"
                    )
                print(f"({elapsed:.1f}s; command: python {' '.join(sys.argv)})")
                if cv:
                    await cross_validate(mem, convs)
    finally:
        embedder.save()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--cv", action="store_true", help="also cross-validate the scoring weights")
    parser.add_argument(
        "--live", type=int, default=256, metavar="N", help="time add_many with the real embedder on N turns (0: skip)"
    )
    args = parser.parse_args()
    asyncio.run(run(args.data, args.cache, args.cv, args.live))


if __name__ == "__main__":
    main()
