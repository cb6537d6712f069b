"""Background ingestion into semantic memory: embedding is slow, so it never sits on the reply path."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from memory.api import Memory, Note

log = logging.getLogger(__name__)


class Ingestor:
    """Queues notes and writes them in batches; ``flush`` drains the queue (also on shutdown)."""

    def __init__(self, memory: Memory, batch: int, interval_s: float) -> None:
        self._memory = memory
        self._batch = batch
        self._interval = interval_s
        self._queue: asyncio.Queue[Note] = asyncio.Queue()
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, note: Note) -> None:
        """Queue a note (never blocks)."""
        self._idle.clear()
        self._queue.put_nowait(note)

    async def flush(self) -> None:
        """Write everything queued now."""
        while not self._queue.empty():
            notes = [self._queue.get_nowait() for _ in range(min(self._batch, self._queue.qsize()))]
            try:
                await self._memory.add_many(notes)
            except ValueError:
                # One bad note must not cost the others: retry them one by one.
                for note in notes:
                    try:
                        await self._memory.add(note)
                    except ValueError as exc:
                        log.error("memory ingestion rejected note %s: %s", note.ref, exc)
        self._idle.set()

    async def wait_idle(self) -> None:
        """Until everything queued so far is written."""
        await self._idle.wait()

    async def run_forever(self) -> None:
        """Flush every ``interval_s``; a final flush on cancellation."""
        try:
            while True:
                await asyncio.sleep(self._interval)
                try:
                    await self.flush()
                except Exception:
                    log.exception("memory ingestion failed; will retry")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.flush())
