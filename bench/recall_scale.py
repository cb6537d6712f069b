"""Recall latency and ingestion rate of semantic memory at 10k and 100k notes in one scope.

Usage: python bench/recall_scale.py [--sizes 10000 100000] [--queries 100] [--batch N] [--cache DIR]

Notes are synthetic: 1,000 template sentences are embedded for real with the local model (cached),
and each note is one of them plus a ticket number, stored with that sentence's vector plus small
Gaussian noise (renormalised). So bulk ingestion does not wait for the embedder, yet the vectors have
the structure of real ones; anything else the product embeds (episode summaries) goes to the real
model. Every query is embedded for real, inside the timed ``recall`` call.

The store is filled the way ``coo run`` fills it: ``add_many`` batches of the chat ingestor's size
(``MemorySettings().ingest_batch``, 32), each written as it comes, the product's own background
index refresh running as it goes; recall is timed right after the last batch is folded in (no
maintenance pass). Larger batches (``--batch 5000``) leave fewer, larger pieces behind and
flatter the figures: users' notes arrive a chat message at a time.

Also printed: the longest event-loop stall seen while ingesting and recalling (a heartbeat task
ticks every 5 ms), and the end-to-end ingestion rate of chat turns (``[date] Name: text``, batches
of 32 as the background ingestor sends them) with the local embedder.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from memory import Note, open_memory
from memory.semantic.embedder import LocalEmbedder
from memory.settings import MemorySettings

CACHE = Path.home() / ".cache" / "solo-coo-bench"
NAMES = ["Ana", "Bo", "Chen", "Dara", "Eli", "Femi", "Gus", "Hana", "Ivo", "Jun"]
CLIENTS = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell", "Soylent", "Cyberdyne"]
TOPICS = ["invoice", "contract", "launch", "budget", "hiring", "roadmap", "pricing", "refund", "audit", "design"]
ACTIONS = [
    "approved",
    "questioned",
    "postponed",
    "signed off on",
    "asked to revise",
    "escalated",
    "drafted",
    "rejected",
    "renegotiated",
    "summarised",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
BASE_COUNT = 1_000
NOISE = 0.02  # per dimension; keeps each note's vector at cosine ~0.93 from its sentence's


def base_sentences() -> list[str]:
    rng = random.Random(7)
    return [
        f"{rng.choice(NAMES)} {rng.choice(ACTIONS)} the {rng.choice(TOPICS)} for {rng.choice(CLIENTS)} "
        f"on {rng.choice(DAYS)}, {rng.randint(2, 40)} items."
        for _ in range(BASE_COUNT)
    ]


def queries(count: int) -> list[str]:
    rng = random.Random(11)
    forms = [
        "what did {n} do about the {t} for {c}?",
        "{c} {t} status",
        "who {a} the {c} {t}",
        "was the {t} for {c} {a} on {d}?",
    ]
    return [
        rng.choice(forms).format(
            n=rng.choice(NAMES),
            t=rng.choice(TOPICS),
            c=rng.choice(CLIENTS),
            a=rng.choice(ACTIONS),
            d=rng.choice(DAYS),
        )
        for _ in range(count)
    ]


class PrecomputedEmbedder:
    """Passages come from a prepared table of vectors; queries go to the real local model."""

    def __init__(self, real: LocalEmbedder, vectors: dict[str, np.ndarray]) -> None:
        self._real = real
        self.vectors = vectors

    @property
    def name(self) -> str:
        return self._real.name  # same vector space: derived from the real model's output

    async def dimension(self) -> int:
        return await self._real.dimension()

    async def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in texts if t not in self.vectors]
        if missing:  # what the product writes beyond the notes (episode summaries)
            self.vectors.update(zip(missing, await self._real.embed_passages(missing), strict=True))
        return np.stack([self.vectors[t] for t in texts])

    async def embed_query(self, text: str) -> np.ndarray:
        return await self._real.embed_query(text)

    async def aclose(self) -> None:
        return None


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


class StallMeter:
    """A heartbeat on the event loop: the longest gap between 5 ms ticks is the worst stall."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            self.worst = max(self.worst, now - last - 0.005)
            last = now

    def __enter__(self) -> StallMeter:
        self._task = asyncio.get_running_loop().create_task(self._beat())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def load_base(real: LocalEmbedder, cache: Path) -> tuple[list[str], np.ndarray]:
    sentences = base_sentences()
    # Per engine: the local model kept its name when its engine changed, and its vectors did not.
    path = cache / f"scale-base-{BASE_COUNT}-{real.engine.replace('/', '-')}.npy"
    if path.exists():
        return sentences, np.load(path)
    vectors = await real.embed_passages(sentences)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return sentences, vectors


async def one_size(
    size: int, real: LocalEmbedder, base: tuple[list[str], np.ndarray], n_queries: int, batch: int
) -> None:
    sentences, base_vectors = base
    rng = np.random.default_rng(size)
    picks = rng.integers(0, len(sentences), size)
    vectors = base_vectors[picks] + rng.standard_normal((size, base_vectors.shape[1])).astype(np.float32) * NOISE
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = [f"{sentences[p]} Ticket T-{i}." for i, p in enumerate(picks)]
    embedder = PrecomputedEmbedder(real, dict(zip(texts, vectors, strict=True)))
    with tempfile.TemporaryDirectory() as tmp, StallMeter() as stalls:
        async with open_memory(Path(tmp), embedder=embedder) as mem:
            started = time.perf_counter()
            for start in range(0, size, batch):
                await mem.add_many(
                    [Note(t, scope="bench", ref=f"t{start + i}") for i, t in enumerate(texts[start : start + batch])]
                )
            ingest = time.perf_counter() - started
            started = time.perf_counter()
            await mem.refresh()
            index = time.perf_counter() - started
            qs = queries(n_queries)
            for q in qs[:5]:
                await mem.recall(q, k=10, scope="bench")  # warm caches
            total, embed_only, overlap = [], [], []
            for q in qs:
                t0 = time.perf_counter()
                await mem.recall(q, k=10, scope="bench")
                total.append((time.perf_counter() - t0) * 1000)
            for q in qs:
                t0 = time.perf_counter()
                await real.embed_query(q)
                embed_only.append((time.perf_counter() - t0) * 1000)
            # Kept apart from the timed loops: the exact numpy scan would heat the CPU for them.
            for q in qs:
                dense = await mem.recall(q, k=10, scope="bench", mode="dense")
                exact = np.argsort(-(vectors @ await real.embed_query(q)))[:10]
                overlap.append(len({h.ref for h in dense} & {f"t{i}" for i in exact}) / 10)
            stats = await mem.maintain()
    print(
        f"{size:>7} notes | ingest {size / ingest:>8.0f} notes/s "
        f"(precomputed vectors, batches of {batch}; {ingest:.1f}s) "
        f"| index refresh {index:.1f}s | ANN index: {'yes' if stats.vector_index else 'no (exact scan)'}"
    )
    print(
        f"        recall k=10: p50 {statistics.median(total):.1f} ms, p95 {percentile(total, 95):.1f} ms "
        f"(query embedding alone: p50 {statistics.median(embed_only):.1f} ms, "
        f"p95 {percentile(embed_only, 95):.1f} ms) over {len(qs)} queries"
    )
    print(f"        dense top-10 vs exact top-10 overlap: {statistics.mean(overlap):.3f}")
    print(f"        longest event-loop stall while ingesting and recalling: {stalls.worst * 1000:.0f} ms")


async def real_ingest_rate(real: LocalEmbedder, count: int = 320) -> None:
    names = ["Ana", "Bo"]
    day = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    notes = [
        Note(f"[{day.day} {day:%B %Y}] {names[i % 2]}: {s} Ticket R-{i}.", at=day + timedelta(seconds=20 * i))
        for i, s in enumerate(base_sentences()[:count])
    ]
    with tempfile.TemporaryDirectory() as tmp, StallMeter() as stalls:
        async with open_memory(Path(tmp), embedder=real) as mem:
            started = time.perf_counter()
            for start in range(0, count, 32):
                await mem.add_many(notes[start : start + 32])
            elapsed = time.perf_counter() - started
    print(
        f"end-to-end ingest with the local embedder: {count / elapsed:.0f} notes/s ({count} chat turns with "
        f"reply context, batches of 32, {elapsed:.1f}s); longest event-loop stall {stalls.worst * 1000:.0f} ms"
    )


async def run(sizes: list[int], n_queries: int, batch: int, cache: Path) -> None:
    real = LocalEmbedder()
    base = await load_base(real, cache)
    print(
        f"command: python {' '.join(sys.argv)}; "
        f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )
    for size in sizes:
        await one_size(size, real, base, n_queries, batch)
    await real_ingest_rate(real)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--batch", type=int, default=MemorySettings().ingest_batch, help="notes per add_many call")
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args()
    asyncio.run(run(args.sizes, args.queries, args.batch, args.cache))


if __name__ == "__main__":
    main()
