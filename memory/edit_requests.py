"""Edit requests: after "Edit" is pressed on a card, the next message in its thread is the correction."""

from __future__ import annotations

import aiosqlite

from memory.db import utcnow
from memory.owned_connection import OwnedConnection


class EditRequests(OwnedConnection):
    """Pending edit requests, one per thread (part of ``memory.approvals.ApprovalStore``)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        super().__init__(conn)
        # Threads that may have an edit request, read once from the table, then kept here: every
        # message asks, almost always about a thread without one, and the answer then costs no
        # SQLite round trip. Only this store writes requests; an entry may be stale (the card was
        # decided since), never missing.
        self._edit_threads: set[str] | None = None

    async def request_edit(self, thread: str, approval_id: str) -> None:
        """The next message in ``thread`` is the correction for ``approval_id``."""
        async with self._writing():
            threads = await self._threads_with_edit_requests()
            threads.add(thread)  # before the write: an entry may be stale, never missing
            await self._conn.execute(
                "INSERT OR REPLACE INTO edit_requests (thread, approval_id, requested_at) VALUES (?, ?, ?)",
                (thread, approval_id, utcnow().isoformat()),
            )

    async def take_edit_request(self, thread: str) -> str | None:
        """Pop the approval id waiting for a correction in ``thread``."""
        threads = self._edit_threads
        if threads is None:
            async with self._lock:
                threads = await self._threads_with_edit_requests()
        if thread not in threads:
            return None
        async with self._writing():
            async with self._conn.execute("SELECT approval_id FROM edit_requests WHERE thread = ?", (thread,)) as cur:
                r = await cur.fetchone()
            if r is not None:
                await self._conn.execute("DELETE FROM edit_requests WHERE thread = ?", (thread,))
        # After the commit: had it failed, the request would still be there, and so would the entry.
        threads.discard(thread)
        return None if r is None else str(r[0])

    async def _threads_with_edit_requests(self) -> set[str]:
        # Callers hold the lock.
        if self._edit_threads is None:
            async with self._conn.execute("SELECT thread FROM edit_requests") as cur:
                self._edit_threads = {str(row[0]) for row in await cur.fetchall()}
        return self._edit_threads
