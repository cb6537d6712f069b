"""Background ingestion into semantic memory: embedding is slow, so it never sits on the reply path.

A batch that fails for any reason but a refused note (the embedder or LanceDB is down, the disk is
full) goes back to the head of the queue and is retried with exponential backoff; nothing taken off
the queue is dropped. A refused note (``ValueError``) costs only itself: the others of its batch are
retried one by one. The clock is injected (``sleep``) so tests never wait on wall time.

Embedding takes the same cores as replies: with ``yield_to`` (the dispatcher's "no turn in flight"),
each batch waits until the bot is not answering anyone, at most ``max_defer_s``, so a burst of
messages is answered first and remembered right after.

The queue lives in process memory: what a crash loses from it is still in SQLite (the event log and
the notes ledger), and ``run_forever``'s ``backlog`` puts it back at the next start. Writing a note
twice is harmless (``Memory.add_many`` stores a ref once per scope).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from memory.aio import wait_at_most
from memory.semantic.notes import Note

if TYPE_CHECKING:
    from memory.semantic.api import Memory

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class Ingestor:
    """Queues notes and writes them in batches; ``flush`` drains the queue (also on shutdown)."""

    def __init__(
        self,
        memory: Memory,
        batch: int,
        interval_s: float,
        *,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 300.0,
        sleep: Sleep = asyncio.sleep,
        yield_to: Callable[[], Awaitable[None]] | None = None,
        max_defer_s: float = 30.0,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self._memory = memory
        self._batch = batch
        self._interval = interval_s
        self._backoff_base = backoff_base_s
        self._backoff_max = backoff_max_s
        self._sleep = sleep
        self._yield_to = yield_to
        self._max_defer = max_defer_s
        self._queue: deque[Note] = deque()
        self._failures = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def pending(self) -> int:
        """Notes queued and not yet written."""
        return len(self._queue)

    @property
    def failures(self) -> int:
        """Consecutive failed flushes (0 after a success)."""
        return self._failures

    def add(self, note: Note) -> None:
        """Queue a note (never blocks)."""
        self._idle.clear()
        self._queue.append(note)

    async def flush(self, yielding: bool = False) -> None:
        """Write everything queued now (``yielding``: each batch after the bot's turns in flight).

        On a failure the batch is put back and the error raised.
        """
        while self._queue:
            if yielding and self._yield_to is not None:
                # Bounded: under a steady stream of messages memory still keeps up, a batch at a time.
                await wait_at_most(self._yield_to(), self._max_defer)
            notes = [self._queue.popleft() for _ in range(min(self._batch, len(self._queue)))]
            try:
                await self._write(notes)
            except BaseException:
                # Back at the head, in order: the next flush retries exactly these notes first.
                self._queue.extendleft(reversed(notes))
                raise
        self._idle.set()

    async def _write(self, notes: list[Note]) -> None:
        try:
            await self._memory.add_many(notes)
            return
        except ValueError:
            pass  # one bad note must not cost the others: retry them one by one
        for index, note in enumerate(notes):
            try:
                await self._memory.add(note)
            except ValueError as exc:
                log.error("memory ingestion rejected note %s: %s", note.ref, exc)
            except BaseException:
                # Notes before this one are written; only the rest goes back.
                del notes[:index]
                raise

    def backoff(self) -> float:
        """Seconds to wait before the next attempt after ``failures`` consecutive failures."""
        if not self._failures:
            return self._interval
        return float(min(self._backoff_max, self._backoff_base * 2 ** (self._failures - 1)))

    async def wait_idle(self) -> None:
        """Until everything queued so far is written."""
        await self._idle.wait()

    async def run_forever(self, backlog: Callable[[], Awaitable[Sequence[Note]]] | None = None) -> None:
        """Flush every ``interval_s`` (backing off while writes fail); a final flush on cancellation.

        ``backlog`` (at start) gives the notes that should be indexed and are not (what a crash lost
        from the queue): they go first, oldest first; a note queued meanwhile is written once, as queued.
        """
        try:
            if backlog is not None:
                await self._take(backlog)
            while True:
                await self._sleep(self.backoff())
                try:
                    await self.flush(yielding=True)
                    self._failures = 0
                except Exception:
                    self._failures += 1
                    log.exception(
                        "memory ingestion failed (%d note(s) kept; attempt %d, next in %.0fs)",
                        len(self._queue),
                        self._failures,
                        self.backoff(),
                    )
        finally:
            await self._final_flush()

    async def _take(self, backlog: Callable[[], Awaitable[Sequence[Note]]]) -> None:
        try:
            notes = await backlog()
        except Exception:
            log.exception("memory ingestion: could not look for notes missing from the index; the next start will")
            return
        # A message that came while the backlog was read is queued already, as received: that copy is the one
        # to write (the log's is dated when it was logged, and the index keeps the first copy of a ref).
        queued = {(note.scope, note.ref) for note in self._queue}
        notes = [note for note in notes if (note.scope, note.ref) not in queued]
        if notes:
            log.warning(
                "memory ingestion: %d note(s) in the log were missing from the index; indexing them", len(notes)
            )
            self._idle.clear()
            self._queue.extendleft(reversed(notes))

    async def _final_flush(self) -> None:
        try:
            await asyncio.shield(self.flush())
        except asyncio.CancelledError:
            log.error("memory ingestion: final flush cancelled; %d note(s) not written", len(self._queue))
            raise
        except Exception:
            log.exception("memory ingestion: final flush failed; %d note(s) not written", len(self._queue))
