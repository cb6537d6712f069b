"""Live updates by server-sent events (``/changes``): an open page hears which parts of the business moved
(``cards``: a card proposed, decided or carried out; ``log``: anything else in the event log, the tasks or
the spend) and fetches itself again in place.

Changes are noticed wherever they were made: a press in Telegram, the outbox finishing an email, the task
runner, another process on the same data. While at least one page listens, one reader compares a few
counters (the newest event, the cards' latest times, ...) every ``interval_s``; a change made by the
console itself (``WebChannel.poke``) is sent at once. Nobody listening: no reads at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from bot.web.channel import WebChannel
from bot.web.services import Services
from memory.db import Database

log = logging.getLogger(__name__)
TOPICS = ("cards", "log")
KEEP_ALIVE_S = 25.0
_FINGERPRINT = (
    "SELECT (SELECT COUNT(*) || '|' || IFNULL(MAX(created_at), '') || '|' || IFNULL(MAX(decided_at), '')"
    " FROM approvals)"
    " || '|' || (SELECT IFNULL(MAX(updated_at), '') FROM outbox),"
    " (SELECT IFNULL(MAX(id), 0) FROM events) || '|' || (SELECT IFNULL(MAX(id), 0) FROM llm_calls)"
    " || '|' || (SELECT IFNULL(MAX(updated_at), '') FROM tasks)"
)


class ChangeFeed:
    """Tells every listening page which topics changed."""

    def __init__(self, db: Database, channel: WebChannel, interval_s: float = 1.0) -> None:
        self._db = db
        self._channel = channel
        self._interval = interval_s
        self._queues: set[asyncio.Queue[frozenset[str] | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def subscribe(self) -> asyncio.Queue[frozenset[str] | None]:
        """A queue of changed topics for one page (None: the console is stopping). The first page starts
        the watch, from a reading taken before this returns: whatever changes after it is told."""
        queue: asyncio.Queue[frozenset[str] | None] = asyncio.Queue()
        if self._task is None or self._task.done():
            # Taken before the reading: a poke made from here on sets this event, even before the watch runs.
            poked = self._channel.changed
            first = await self._fingerprint()
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._watch(first, poked), name="web-changes")
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[frozenset[str] | None]) -> None:
        """That page went away; the watch stops with the last one."""
        self._queues.discard(queue)

    @property
    def closed(self) -> bool:
        """True once the console is stopping."""
        return self._closed

    async def close(self, _: web.Application | None = None) -> None:
        """End every stream and the watch (the console is stopping)."""
        self._closed = True
        for queue in self._queues:
            queue.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self, last: dict[str, str], poked: asyncio.Event) -> None:
        while self._queues and not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(poked.wait(), self._interval)
            was_poked = poked.is_set()
            if was_poked:  # the next poke sets the channel's new event, even one made during the reading
                poked = self._channel.changed
            now = await self._fingerprint()
            moved = frozenset(TOPICS) if was_poked else frozenset(t for t in TOPICS if now[t] != last[t])
            last = now
            if moved:
                for queue in self._queues:
                    queue.put_nowait(moved)

    async def _fingerprint(self) -> dict[str, str]:
        row = await self._db.read_one(_FINGERPRINT)
        return dict(zip(TOPICS, (str(row[0]), str(row[1])), strict=True))


def register_live(app: web.Application, services: Services, interval_s: float = 1.0) -> ChangeFeed:
    """Add ``/changes``; streams end when the console stops."""
    feed = ChangeFeed(services.views.db, services.channel, interval_s)

    async def changes(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        queue = await feed.subscribe()
        try:
            await response.write(b"retry: 3000\n\n")
            while not feed.closed:
                try:
                    moved = await asyncio.wait_for(queue.get(), KEEP_ALIVE_S)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if moved is None:
                    break
                await response.write(f"event: change\ndata: {' '.join(sorted(moved))}\n\n".encode())
        except ConnectionResetError:
            log.debug("a live page went away")
        finally:
            feed.unsubscribe(queue)
        return response

    app.router.add_get("/changes", changes)
    app.on_shutdown.append(feed.close)
    return feed
