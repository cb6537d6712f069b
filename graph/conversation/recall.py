"""What a prompt recalls, without making the reply wait for the embedder.

Embedding a query with the local model costs about as much CPU as the whole rest of a turn (tens of
milliseconds for one chat message), so the prompt is built from two parts that are both ready when
the turn starts:

- lexical: the operator's earlier messages sharing this one's rarest words, from the event log's
  full-text index (SQLite FTS5, a few milliseconds however long the log); messages ``/forget``
  removed from memory are left out;
- prepared: the semantic recall (``Memory.recall``: vectors plus BM25) for the conversation's
  previous message, computed in the background after that turn, or for this very message when a
  tool round gives it time to finish.

So a message sharing words with a memory finds it at once, and a paraphrase ("the coffee people")
finds it from the conversation's next message on (or within the same turn, after a tool round).
Background work is bounded: one recall runs at a time, and per conversation only the newest text waits.

A turn recalls only what was said before the message it answers (its ``Horizon``): in a burst, the
messages stored after it, in its chat or another, are not its memories (they were not said yet when it
was written). There is one memory scope per install (``COO_MEMORY__SCOPE``), shared by its chats, and
the semantic recall never leaves it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from graph.conversation.tools import keywords
from memory.aio import wait_at_most
from memory.db import Database, Event
from memory.records import Record, Records
from memory.semantic.chat_notes import said

if TYPE_CHECKING:
    from memory.semantic.api import Memory

log = logging.getLogger(__name__)

MAX_RECALL_QUERY_CHARS = 1_000
PROMPT_MEMORIES = 5
LEXICAL_CANDIDATES = 6
SEMANTIC_K = 6
LINE_CHARS = 500
PREPARED_TTL_S = 30 * 60.0
"""How long a conversation's prepared recall stays in use (a topic rarely outlives a pause)."""
MAX_SESSIONS = 1_000
"""Prepared recalls kept, newest conversations first (memory stays bounded with many chats)."""
MAX_DEFER_S = 10.0
"""How long a recall waits for the bot to turn quiet before it runs anyway."""


@dataclass(frozen=True)
class Recalled:
    """One recalled thing: the line shown to the model and the reference it came from."""

    line: str
    ref: str
    text: str = ""
    """The remembered text itself (to leave out the message being answered)."""
    at: datetime | None = None
    """When it was said or noted (None: unknown, e.g. built by hand)."""


_MESSAGE_REF = re.compile(r"msg-(\d+)")


@dataclass(frozen=True)
class Horizon:
    """The message a turn answers: what may be recalled for it was said before it."""

    event_id: int
    at: datetime

    def admits(self, hit: Recalled) -> bool:
        """True for a memory older than the message: a message by its place in the log, a note by its time."""
        message = _MESSAGE_REF.fullmatch(hit.ref)
        if message is not None:
            return int(message[1]) < self.event_id
        return hit.at is None or hit.at < self.at

    def to_state(self) -> dict[str, Any]:
        """JSON-plain form for the turn's checkpointed state."""
        return {"event_id": self.event_id, "at": self.at.isoformat()}

    @classmethod
    def from_state(cls, value: Any) -> Horizon | None:
        """The horizon a turn's state holds (None for none, or a state from before horizons)."""
        if not isinstance(value, dict):
            return None
        return cls(int(value["event_id"]), datetime.fromisoformat(str(value["at"])))


def before(horizon: Horizon | None, hits: Iterable[Recalled]) -> list[Recalled]:
    """The hits the horizon admits (all of them without one)."""
    return [hit for hit in hits if horizon is None or horizon.admits(hit)]


@dataclass(frozen=True)
class _Prepared:
    text: str
    hits: tuple[Recalled, ...]
    at: float


def query_of(text: str) -> str:
    """The recall query for a message: stripped and capped (the embedder's cost grows with length)."""
    return text.strip()[:MAX_RECALL_QUERY_CHARS]


async def semantic_recall(
    memory: Memory, query: str, scope: str, exclude: str = "", horizon: Horizon | None = None
) -> list[Recalled]:
    """Top memories by meaning (and words) as prompt lines, best first; ``exclude`` is a text to leave out,
    and what is newer than ``horizon`` is left out too."""
    hits = await memory.recall(query, k=SEMANTIC_K, scope=scope)
    # A chat note's text starts with its date and speaker (for search); the line and the comparison
    # with ``exclude`` (the message the recall is for) use what it says.
    found = [(h, said(h.text, h.source)) for h in hits]
    lines = [
        Recalled(f"[{h.at:%Y-%m-%d} {h.source}] {text[:LINE_CHARS]}", h.ref, text, h.at)
        for h, text in found
        if text.strip() != exclude.strip()
    ]
    return before(horizon, lines)


def _lexical_line(event: Event) -> Recalled:
    channel = (event.session or "").split(":", 1)[0] or "chat"
    text = str(event.payload.get("text", ""))
    return Recalled(f"[{event.at:%Y-%m-%d} chat:{channel}] {text[:LINE_CHARS]}", f"msg-{event.id}", text, event.at)


async def lexical_recall(db: Database, query: str, exclude: str = "", horizon: Horizon | None = None) -> list[Recalled]:
    """The operator's earlier messages sharing words with ``query`` (full-text index, best first); with a
    ``horizon``, only those said before it."""
    words = keywords(query)
    if not words:
        return []
    ceiling = horizon.event_id if horizon is not None else None
    events = await db.recall_messages(words, LEXICAL_CANDIDATES + 1, before=ceiling)  # + 1: the message answered
    return [line for line in map(_lexical_line, events) if line.text.strip() != exclude.strip()][:LEXICAL_CANDIDATES]


def _folded(words: Iterable[str]) -> set[str]:
    """Words as compared for sharing: lower case, Latin accents removed (as the full-text index does)."""
    return {"".join(c for c in unicodedata.normalize("NFKD", w) if not unicodedata.combining(c)) for w in words}


def _same_word(a: str, b: str) -> bool:
    """``pay`` and ``pays``, ``invoice`` and ``invoiced``: equal, or one a short extension of the other."""
    short, long = sorted((a, b), key=len)
    return long.startswith(short) and len(long) - len(short) <= 3


def shares_a_word(query: str, text: str) -> bool:
    """True when ``text`` has one of the query's words (stop words and words under 3 letters aside)."""
    wanted = _folded(keywords(query))
    return any(_same_word(w, t) for t in _folded(keywords(text)) for w in wanted)


def relevant_for_listing(query: str, hits: list[Recalled]) -> list[Recalled]:
    """The hits to list as they are, with no model to judge them (offline mode), best first.

    Semantic memory's relevance floor keeps a hit that shares no word with the query when it is nearly
    as close in meaning as the best candidate; in a prompt the model sets aside what does not fit, but a
    list shown as is would say "hello again" relates to "clear". Here the floor is anchored on evidence:
    a hit without a shared word is kept only when it ranks above one that has one.
    """
    evidence = [i for i, hit in enumerate(hits) if shares_a_word(query, hit.text)]
    return hits[: evidence[-1] + 1] if evidence else []


def interleave(*ranked: list[Recalled], limit: int = PROMPT_MEMORIES) -> list[Recalled]:
    """Take the lists' items in turn (each list is best first), without repeating a reference."""
    out: list[Recalled] = []
    seen: set[str] = set()
    for row in range(max((len(r) for r in ranked), default=0)):
        for items in ranked:
            if row < len(items) and items[row].ref not in seen:
                seen.add(items[row].ref)
                out.append(items[row])
    return out[:limit]


class SessionRecall:
    """The recall each conversation's prompt uses, and the background work that prepares it."""

    def __init__(
        self,
        db: Database,
        memory: Memory | None,
        scope: str = "default",
        *,
        ttl_s: float = PREPARED_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        yield_to: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``yield_to`` (the dispatcher's "no turn in flight") holds each recall until the bot is not
        answering anyone, at most ``MAX_DEFER_S``: a query embedding costs a core for tens of ms, and
        in a burst of messages the replies come first."""
        self._db = db
        self._memory = memory
        self._yield_to = yield_to
        self._scope = scope
        self._ttl = ttl_s
        self._clock = clock
        self._prepared: OrderedDict[str, _Prepared] = OrderedDict()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._waiting: dict[str, str] = {}
        # One recall at a time for all conversations: a burst in many chats must not queue dozens of
        # embeddings (each holding a worker thread) ahead of the replies and of ingestion.
        self._slot = asyncio.Semaphore(1)
        self._closed = False

    async def for_prompt(self, session: str, request: str, horizon: Horizon | None = None) -> list[Recalled]:
        """Memories for this request now: lexical matches, then what was prepared for the conversation;
        with a ``horizon``, only what was said before the message being answered."""
        query = query_of(request)
        if not query:
            return []
        lexical = await lexical_recall(self._db, query, exclude=request, horizon=horizon)
        prepared = self._prepared.get(session)
        semantic: list[Recalled] = []
        if prepared is not None and self._clock() - prepared.at <= self._ttl:
            # Prepared in the background, perhaps after newer messages were stored: the horizon applies.
            semantic = [hit for hit in before(horizon, prepared.hits) if hit.text.strip() != request.strip()]
        return interleave(lexical, semantic)

    def prepare(self, session: str, text: str) -> None:
        """Recall for ``text`` in the background; the conversation's next prompts use the result."""
        query = query_of(text)
        if self._memory is None or self._closed or not query:
            return
        if session in self._running:
            self._waiting[session] = query  # only the newest text waits; older ones are skipped
            return
        self._running[session] = asyncio.create_task(self._run(session, query), name=f"recall {session}")

    async def _run(self, session: str, query: str) -> None:
        assert self._memory is not None
        try:
            while True:
                try:
                    await self._quiet()
                    async with self._slot:
                        query = self._waiting.pop(session, query)  # the newest text by the time it is our turn
                        hits = await semantic_recall(self._memory, query, self._scope, exclude=query)
                except ValueError:
                    hits = []
                except Exception:
                    # A broken memory costs the prompt its prepared part, never the conversation.
                    log.warning("preparing recall for %s failed", session, exc_info=True)
                    hits = []
                self._prepared[session] = _Prepared(query, tuple(hits), self._clock())
                self._prepared.move_to_end(session)
                while len(self._prepared) > MAX_SESSIONS:
                    self._prepared.popitem(last=False)
                next_query = self._waiting.pop(session, None)
                if next_query is None:
                    return
                query = next_query
        finally:
            self._running.pop(session, None)

    async def _quiet(self) -> None:
        if self._yield_to is not None:
            await wait_at_most(self._yield_to(), MAX_DEFER_S)

    async def settled(self, session: str) -> None:
        """Until nothing is being prepared for ``session`` (tests and shutdown)."""
        while (task := self._running.get(session)) is not None:
            await asyncio.wait([task])

    async def aclose(self) -> None:
        """Stop preparing; running recalls are cancelled."""
        self._closed = True
        self._waiting.clear()
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class ContactNames:
    """The contacts' names, cached until a record changes (records only ever gain rows)."""

    def __init__(self, records: Records, db: Database) -> None:
        self._records = records
        self._db = db
        self._stamp: int | None = None
        self._contacts: list[Record] = []

    async def current(self) -> list[Record]:
        """The live contacts (``Record`` objects), read again when the records table grew."""
        row = await self._db.read_one("SELECT MAX(rowid) FROM records")
        stamp = int(row[0] or 0)
        if stamp != self._stamp:
            self._contacts = await self._records.all("contact")
            self._stamp = stamp
        return self._contacts
