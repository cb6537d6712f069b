"""Rebuilding semantic memory when its index fails.

LanceDB holds an index, not the only copy: the operator's messages are in the event log and remembered
notes in SQLite. When a search or a write finds the index missing or corrupt, :class:`MemoryRepair`
runs the memory's maintenance (which replaces broken tables by empty ones) and, when it rebuilt them,
feeds back everything from SQLite (minus what was forgotten). One repair at a time; asking again while
one runs changes nothing. At each start, :meth:`MemoryRepair.missing` finds what a crash kept out of the
index.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from memory.db import Database
from memory.notes import NoteLedger
from memory.semantic.chat_notes import forgotten_refs, notes_from_log
from memory.semantic.contracts import MemoryUnavailable
from memory.semantic.notes import InvalidNote, Note

if TYPE_CHECKING:
    from memory.semantic.api import Memory

log = logging.getLogger(__name__)

BATCH = 64
# The ids of the log's chat messages: a superset of ``chat_notes.is_chat_message``, which decides.
_CHAT_IDS = (
    "SELECT id FROM events WHERE kind = 'message.in' AND json_extract(payload, '$.kind') = 'message' "
    "AND substr(json_extract(payload, '$.text'), 1, 1) <> '/' AND json_extract(payload, '$.redacted') IS NOT 1"
)
_FORGOTTEN = "SELECT json_extract(payload, '$.ref') FROM events WHERE kind = 'memory.forgotten'"


class MemoryRepair:
    """Starts (at most one) background repair of semantic memory; see the module docstring."""

    def __init__(self, memory: Memory, db: Database, notes: NoteLedger, scope: str, timezone: str) -> None:
        self._memory = memory
        self._db = db
        self._notes = notes
        self._scope = scope
        self._tz = timezone
        self._running: asyncio.Task[int] | None = None

    def request(self) -> None:
        """Start a repair unless one is running (called when memory reported itself unavailable)."""
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._logged(), name="memory-repair")

    async def wait(self) -> int:
        """Wait for the running repair, if any; the number of notes it fed back."""
        return await self._running if self._running is not None else 0

    async def aclose(self) -> None:
        """Stop a repair in progress (at shutdown; the next failure or maintenance starts it again)."""
        if self._running is not None and not self._running.done():
            self._running.cancel()
            await asyncio.gather(self._running, return_exceptions=True)

    async def _logged(self) -> int:
        try:
            return await self.run()
        except Exception:
            log.exception("memory repair failed; the next failed search asks for it again")
            return 0

    async def run(self) -> int:
        """Maintain; when the tables had to be rebuilt, feed everything back. Returns notes written."""
        stats = await self._memory.maintain()
        if not stats.rebuilt:
            return 0
        notes = await self._from_log()
        written = 0
        for start in range(0, len(notes), BATCH):
            written += await self._add(notes[start : start + BATCH])
        log.warning("semantic memory was rebuilt from the log: %d note(s) fed back", written)
        return written

    async def missing(self) -> list[Note]:
        """What SQLite holds but the index lacks, oldest first: read at each start, to be indexed again.

        A message is logged before it is answered, but queued for indexing in process memory only
        (while its turn runs, then until a batch is written, or while writes fail): a crash there
        (kill -9, power loss) loses the queue, and the replayed turn does not queue it again. So at
        each start the canonical copy is compared with the index by ref: at 100k messages ~0.2 s,
        the event loop held ~25 ms of it (ad hoc); only the missing messages are read whole. When the
        index cannot be read, this starts the repair (which feeds everything back) and returns nothing.
        """
        remembered = await self._notes.all()
        try:
            stored = {scope: await self._memory.refs(scope) for scope in {self._scope, *(n.scope for n in remembered)}}
        except MemoryUnavailable:
            log.warning("semantic memory cannot be read; repairing it", exc_info=True)
            self.request()
            return []
        ids = [row[0] for row in await self._db.fetchall(_CHAT_IDS) if f"msg-{row[0]}" not in stored[self._scope]]
        events = await self._db.events_by_id(ids)
        forgotten = {str(row[0]) for row in await self._db.fetchall(_FORGOTTEN)}
        notes = notes_from_log(events, remembered, self._scope, self._tz, forgotten)
        return sorted((n for n in notes if n.ref not in stored[n.scope]), key=lambda n: n.at)

    async def _from_log(self) -> list[Note]:
        """Everything semantic memory should hold, from SQLite, minus what was forgotten."""
        events = await self._db.events(("message.in", "memory.forgotten"), limit=10**9)
        return notes_from_log(events, await self._notes.all(), self._scope, self._tz, forgotten_refs(events))

    async def _add(self, batch: list[Note]) -> int:
        while batch:
            try:
                return len(await self._memory.add_many(batch))
            except InvalidNote as exc:
                # One note the memory refuses must not cost the others of its batch.
                log.warning("semantic memory refused %s while rebuilding: %s", batch[exc.index].ref, exc)
                batch = batch[: exc.index] + batch[exc.index + 1 :]
        return 0
