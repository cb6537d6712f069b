"""Episode summaries as semantic memory stores them: written when an episode closes, rewritten by a model in the
background, written again when ``forget`` removes a turn, and caught up by ``maintain()`` after a fault.

The summaries themselves are made in :mod:`memory.semantic.episodes`; here they are stored in the
``episodes`` table, searched by full text (the summary plus the words it left out; no vector: on
LoCoMo dev a summary vector added nothing over its BM25 score, and it cost an embedding and a search).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import pyarrow as pa

from memory.semantic import turns
from memory.semantic.episodes import ALSO_MENTIONED, ExtractiveSummarizer, Summarizer, searchable
from memory.semantic.filters import first_part, is_
from memory.semantic.notes import Episode, check_scope
from memory.semantic.store import SemanticStore
from memory.semantic.tables import EPISODE_COLUMNS, EPISODES, episodes_schema

log = logging.getLogger(__name__)


class EpisodeSummaries:
    """Writes and lists the summaries of one store's closed episodes.

    ``lock`` is the memory's ingestion lock: a model summary is checked and written under it, and
    ``forget`` holds it while it scrubs, so a summary of turns since forgotten never overwrites the
    scrubbed one.
    """

    def __init__(
        self,
        store: SemanticStore,
        summarizer: Summarizer | None,
        lock: asyncio.Lock,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._extractive = ExtractiveSummarizer()
        self._summarizer = summarizer
        self._lock = lock
        self._clock = clock
        self._background: set[asyncio.Task[None]] = set()
        # Bumped for an episode each time ``forget`` rewrites it: a model summary started before
        # (from the turns as they were) is then stale and dropped.
        self._generations: dict[str, int] = {}

    async def summarize(self, scope: str, episode: str, lines: list[str], start: datetime, end: datetime) -> None:
        """Write the extractive summary of a closed episode now, and a model's later if one is set.

        Never raises: the episode's turns are already stored, and a failed summary is retried by
        ``maintain()``.
        """
        try:
            summary = await self._extractive(lines)
            await self._put(scope, episode, start, end, lines, self._extractive.name, summary)
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
            async with self._lock:
                if self._generations.get(episode, 0) != generation:
                    log.info("the model summary of episode %s is dropped: a turn of it was forgotten", episode)
                    return
                await self._put(scope, episode, start, end, lines, self._summarizer.name, summary)
        except Exception:
            log.exception(
                "summarizer %s failed on episode %s; the extractive summary stays", self._summarizer.name, episode
            )

    async def _put(
        self, scope: str, episode: str, start: datetime, end: datetime, lines: list[str], by: str, summary: str
    ) -> None:
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

    async def lines(self, scope: str, episode: str) -> tuple[list[str], datetime, datetime]:
        """The episode's turns in order (``Speaker: text``), and when its first and last were said."""
        rows = (
            await self._store.scan(scope, ["seq", "at", "text"], is_("episode", episode) & first_part())
        ).to_pylist()
        rows.sort(key=lambda r: r["seq"])
        if not rows:
            return [], self._clock(), self._clock()
        return [turns.parse(row["text"]).line for row in rows], rows[0]["at"], rows[-1]["at"]

    async def listed(self, scope: str) -> list[Episode]:
        """The summarized (closed) episodes of ``scope``, oldest first."""
        rows = (await self._store.scan(check_scope(scope), EPISODE_COLUMNS, table=EPISODES)).to_pylist()
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

    async def rewrite(self, scope: str, episodes: set[str]) -> None:
        """After turns of ``episodes`` were forgotten: drop model summaries under way, summarize the rest anew."""
        for episode in episodes:
            self._generations[episode] = self._generations.get(episode, 0) + 1
        summarized = set((await self._store.scan(scope, ["id"], table=EPISODES)).column("id").to_pylist())
        for episode in sorted(episodes & summarized):
            lines, start, end = await self.lines(scope, episode)
            if lines:
                await self.summarize(scope, episode, lines, start, end)
            else:
                await self._store.delete_episode(episode)

    async def catch_up(self) -> None:
        """Summarize closed episodes whose summary was never written (a fault while they closed)."""
        rows = (await self._store.scan(None, ["scope", "episode", "seq"], first_part())).to_pylist()
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
                lines, start, end = await self.lines(scope, episode)
                if lines:
                    await self.summarize(scope, episode, lines, start, end)

    async def settled(self) -> None:
        """Wait for the model summaries under way (their failures are logged)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
