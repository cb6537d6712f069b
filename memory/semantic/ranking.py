"""How recall ranks its candidates: each turn's vector and BM25 scores (normalised over the candidates), a
bonus for a speaker or a period the question names, its episode's score, a penalty for a turn that asks,
and a relevance floor. The weights are module attributes so ``bench/recall_locomo.py --cv`` can try others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from memory.semantic import turns
from memory.semantic.query import TimeWindow

# Candidates taken from each retriever (turns) before scoring. Each costs latency at scale: LanceDB
# reads every candidate's columns (and, for full text, its vector) row by row, and the ANN search
# re-scores ``indexes.REFINE_FACTOR`` times as many rows on full vectors. Full-text pools of
# 20/25/30/40/50 gave R@10 0.792/0.797/0.800/0.800/0.801 on LoCoMo dev (bench/recall_locomo.py), and
# 30 instead of 50 took ~1.5 ms off recall at 100k notes (ad-hoc timings).
POOL = 30
DENSE_POOL = 20
EPISODE_POOL = 8
# Scoring weights, in units of a normalised retriever score (the best candidate scores 1).
DENSE_WEIGHT = 0.5
TEXT_WEIGHT = 0.5
# Chosen by leave-one-conversation-out cross-validation on the LoCoMo dev set (each of the three
# folds picked 0.25 from {0.25, 0.5, 1.0} on the other two conversations; bench/recall_locomo.py --cv).
SPEAKER_BONUS = 0.25
TIME_BONUS = 0.3
EPISODE_WEIGHT = 0.2
# Relevance floor: a candidate with no query term in common must be this close by cosine to the
# question as the best candidate is (on LoCoMo, 1 evidence turn in ~460 lacks a shared term, at
# 0.004 below the best; half of all such turns sit 0.09 or more below it).
FLOOR_BELOW_BEST = 0.03
# Taken from the score of a turn that ends with a question mark: such turns match a question's
# wording and shape (a question embeds close to questions) but seldom hold the fact asked for, which
# the reply holds (and the reply is indexed with the question as its context). On LoCoMo dev
# (bench/recall_locomo.py) R@10 0.806/0.817/0.821/0.815/0.792 with 0/0.1/0.2/0.3/0.5; each fold of
# leave-one-conversation-out cross-validation picked 0.2 (held-out R@10 0.821).
QUESTION_PENALTY = 0.2


def _normalised(values: np.ndarray) -> np.ndarray:
    """Scale scores so the best candidate has 1 and the worst 0 (all 0 when they are equal)."""
    if not len(values):
        return values
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def _cosines(rows: list[dict[str, Any]], vector: np.ndarray) -> np.ndarray:
    """Cosine to the question: from the vector search's exact distance, else from the row's vector."""
    out = np.zeros(len(rows), dtype=np.float32)
    for i, row in enumerate(rows):
        distance = row.get("_distance")
        out[i] = 1.0 - float(distance) if distance is not None else float(row["vector"] @ vector)
    return out


def candidates(dense: list[dict[str, Any]], lexical: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One row per note (chunks of a note count once, by their best BM25 score)."""
    out: dict[str, dict[str, Any]] = {}
    for row in dense:
        out.setdefault(row["id"], {**row, "_score": 0.0})
    for row in lexical:
        known = out.get(row["id"])
        if known is None or known["_score"] < row["_score"]:
            out[row["id"]] = row
    return out


def episode_scores(lexical: list[dict[str, Any]]) -> dict[str, float]:
    """Each found episode's BM25 score, normalised over the episodes found."""
    if not lexical:
        return {}
    scores = np.array([float(row["_score"]) for row in lexical], dtype=np.float32)
    scaled = scores / scores.max() if scores.max() > 0 else scores
    return {row["id"]: float(score) for row, score in zip(lexical, scaled, strict=True)}


def _floor_reference(rows: list[dict[str, Any]], cosines: np.ndarray, question: str) -> float:
    """The best cosine to the question among candidates that are not the question itself.

    A chat's recall may run for a message that is already stored: that note matches the question
    almost exactly and says nothing about how close the others must be.
    """
    asked = question.strip().casefold()
    for i in np.argsort(-cosines):
        if turns.parse(rows[i]["text"]).body.casefold() != asked:
            return float(cosines[i])
    return float(cosines.max())


def score(
    rows: list[dict[str, Any]],
    vector: np.ndarray,
    question: str,
    *,
    speakers: set[str],
    window: TimeWindow | None,
    episodes: dict[str, float],
    weights: tuple[float, float],
    asking: float,
    floor: bool,
) -> list[tuple[dict[str, Any], float]]:
    if not rows:
        return []
    cosines = _cosines(rows, vector)
    bm25 = np.array([float(row.get("_score") or 0.0) for row in rows], dtype=np.float32)
    scores = weights[0] * _normalised(cosines) + weights[1] * (bm25 / bm25.max() if bm25.max() > 0 else bm25)
    if speakers:
        scores += SPEAKER_BONUS * np.array([row["speaker"] in speakers for row in rows], dtype=np.float32)
    if window is not None:
        scores += TIME_BONUS * np.array([window.contains(row["at"]) for row in rows], dtype=np.float32)
    if episodes:
        scores += EPISODE_WEIGHT * np.array([episodes.get(row["episode"], 0.0) for row in rows], dtype=np.float32)
    if asking:
        scores -= asking * np.array([turns.asks(turns.parse(row["text"]).body) for row in rows], dtype=np.float32)
    lowest = _floor_reference(rows, cosines, question) - FLOOR_BELOW_BEST if floor else -np.inf
    keep = [i for i in range(len(rows)) if bm25[i] > 0 or cosines[i] >= lowest]
    keep.sort(key=lambda i: (-scores[i], rows[i]["seq"], rows[i]["id"]))
    return [(rows[i], float(scores[i])) for i in keep]


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Fuse ranked id lists: score(id) = sum(weight / (k + rank)), rank from 1. Best first.

    Ties break on the best single rank, then on the id, so the order is fully deterministic.
    """
    weights = weights if weights is not None else [1.0] * len(rankings)
    scores: dict[str, float] = {}
    best: dict[str, int] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
            best[key] = min(best.get(key, rank), rank)
    return sorted(scores.items(), key=lambda item: (-item[1], best[item[0]], item[0]))
