"""Recall@5/@10 of LoCoMo evidence turns: hybrid vs BM25 alone vs dense alone.

Usage: python bench/recall_locomo.py [--data DIR] [--text plain|speaker|speaker-date|context] [--cache DIR]

Every turn becomes a Note (scope = conversation, ref = dia_id, at = session date). Every question of
categories 1-4 with evidence is asked; recall@k = share of its evidence turns among the k best hits,
averaged per question. Embeddings are cached on disk so reruns are fast.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from memory import Note, open_memory
from memory.api import RecallMode
from memory.embedder import Embedder, LocalEmbedder

DATA = Path("/work/shared/bench/locomo-dev")
CACHE = Path.home() / ".cache" / "solo-coo-bench"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
MODES: tuple[RecallMode, ...] = ("hybrid", "text", "dense")
LABELS = {"hybrid": "hybrid (ours)", "text": "BM25 alone", "dense": "dense alone"}
KS = (5, 10)


class CachedEmbedder:
    """Wraps an embedder with an on-disk cache keyed by model, kind and text."""

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
        return hashlib.sha256(f"{self.name}\0{kind}\0{text}".encode()).hexdigest()

    async def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        keys = [self._key("p", t) for t in texts]
        missing = sorted({i for i, key in enumerate(keys) if key not in self._cache})
        if missing:
            vectors = await self._inner.embed_passages([texts[i] for i in missing])
            for i, vector in zip(missing, vectors, strict=True):
                self._cache[keys[i]] = vector
            self._dirty = True
        return np.stack([self._cache[key] for key in keys]) if keys else np.empty((0, 0), np.float32)

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


def session_time(raw: str | None) -> datetime:
    if raw:
        try:
            return datetime.strptime(raw, "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime(2000, 1, 1, tzinfo=UTC)


STYLES = {
    "plain": "the turn's text only",
    "speaker": "'Speaker: text [shares <image caption>]'",
    "speaker-date": "'Speaker (session date): text [shares ...]'",
    "context": "the previous turn of the session, then 'Speaker: text [shares ...]'",
}


def turn_line(turn: dict[str, Any], date: str | None = None) -> str:
    text = turn["text"]
    if turn.get("image_caption"):
        text = f"{text} [shares {turn['image_caption']}]"
    who = f"{turn['speaker']} ({date})" if date else turn["speaker"]
    return f"{who}: {text}"


def note_text(turns: list[dict[str, Any]], index: int, date: str, style: str) -> str:
    """The text stored for turn ``index`` of a session under one of ``STYLES``."""
    turn = turns[index]
    if style == "plain":
        return str(turn["text"])
    if style == "speaker-date":
        return turn_line(turn, date)
    if style == "context" and index > 0:
        # A reply ("Seven years now!") often only makes sense with the turn it answers.
        return f"{turn_line(turns[index - 1])}\n{turn_line(turn)}"
    return turn_line(turn)


def evidence_ids(raw: list[str]) -> set[str]:
    # One item in the data holds two ids joined by ";".
    return {part.strip() for item in raw for part in item.split(";") if part.strip()}


async def run(data_dir: Path, convs: list[dict[str, Any]], style: str, embedder: CachedEmbedder) -> None:
    # sums[mode][category][k] and counts[category]
    sums: dict[str, dict[int, dict[int, float]]] = {m: defaultdict(lambda: dict.fromkeys(KS, 0.0)) for m in MODES}
    counts: dict[int, int] = defaultdict(int)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        async with open_memory(Path(tmp), embedder=embedder) as mem:
            for conv in convs:
                scope = conv["conversation_id"]
                notes = [
                    Note(
                        text=note_text(session["turns"], i, session.get("date_time", ""), style),
                        source=turn["speaker"],
                        at=session_time(session.get("date_time")),
                        scope=scope,
                        ref=turn["dia_id"],
                    )
                    for session in conv["sessions"]
                    for i, turn in enumerate(session["turns"])
                ]
                await mem.add_many(notes)
                await mem.refresh()
                for qa in conv["qa"]:
                    evidence = evidence_ids(qa.get("evidence", []))
                    category = qa["category"]
                    if category not in CATEGORIES or not evidence:
                        continue
                    counts[category] += 1
                    for mode in MODES:
                        hits = await mem.recall(qa["question"], k=max(KS), scope=scope, mode=mode)
                        refs = [h.ref for h in hits]
                        for k in KS:
                            sums[mode][category][k] += len(evidence & set(refs[:k])) / len(evidence)
    elapsed = time.perf_counter() - started
    total = sum(counts.values())
    print(f"LoCoMo dev ({data_dir}); questions scored: {total}")
    print(f"note text style {style!r}: {STYLES[style]}")
    header = f"{'retriever':<15} {'category':<12} {'n':>4} {'R@5':>6} {'R@10':>6}"
    print(header)
    print("-" * len(header))
    for mode in MODES:
        for category, label in CATEGORIES.items():
            n = counts[category]
            if n:
                r5, r10 = (sums[mode][category][k] / n for k in KS)
                print(f"{LABELS[mode]:<15} {label:<12} {n:>4} {r5:>6.3f} {r10:>6.3f}")
        r5, r10 = (sum(sums[mode][c][k] for c in counts) / total for k in KS)
        print(f"{LABELS[mode]:<15} {'overall':<12} {total:>4} {r5:>6.3f} {r10:>6.3f}")
    print(f"({elapsed:.1f}s; command: python {' '.join(sys.argv)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--text", choices=list(STYLES), default="context")
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args()
    convs = []
    for path in sorted(args.data.glob("conv-*.json")):
        conv = json.loads(path.read_text())
        conv.setdefault("conversation_id", path.stem)
        convs.append(conv)
    embedder = CachedEmbedder(LocalEmbedder(), args.cache / "locomo-embeddings.npz")
    asyncio.run(run(args.data, convs, args.text, embedder))
    embedder.save()


if __name__ == "__main__":
    main()
