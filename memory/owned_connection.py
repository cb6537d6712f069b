"""A store that owns its SQLite connection, with a lock around every use of it: an open transaction on a
shared connection would otherwise be committed by any other coroutine's commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiosqlite


class OwnedConnection:
    """The connection, its lock, and :meth:`_writing` (the lock, then a commit or a rollback)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        """The lock, and a commit at the end; a failure rolls back (an implicit transaction left
        open would make every later write on this connection fail)."""
        async with self._lock:
            try:
                yield
                await self._conn.commit()
            except BaseException:
                if self._conn.in_transaction:
                    await self._conn.rollback()
                raise
