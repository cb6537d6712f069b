"""The application's SQLite connection and how every store reads and writes through it.

One aiosqlite connection in WAL mode with a busy timeout, shared by the stores built on it, and a read-only
one for reads of committed data. Every write goes through :meth:`DbAccess.write`,
:meth:`DbAccess.run_transaction` or :meth:`DbAccess.transaction`, which hold one lock: on a shared
connection, another coroutine's ``commit()`` would otherwise commit half of a transaction.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiosqlite

from memory.grouped import Grouped, each, in_one_transaction, on_thread
from memory.install import Install
from memory.term_counts import TermCounts

T = TypeVar("T")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
INSERT_EVENT = "INSERT INTO events (at, actor, session, kind, payload) VALUES (?, ?, ?, ?, ?)"


def utcnow() -> datetime:
    """Timezone-aware now, in UTC."""
    return datetime.now(UTC)


def clean_text(text: str) -> str:
    """``text`` with lone surrogates (which no UTF-8 store accepts) replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def dumps(value: Any) -> str:
    """Compact JSON for storage; text that cannot be encoded is repaired, never dropped."""
    return clean_text(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


@dataclass(frozen=True)
class Written:
    """What a write did: rows changed and the last inserted rowid."""

    rowcount: int
    lastrowid: int | None


def event_row(kind: str, actor: str, payload: dict[str, Any], session: str | None) -> tuple[Any, ...]:
    """An event's row for ``INSERT_EVENT``, stamped now."""
    return (utcnow().isoformat(), actor, session, kind, dumps(payload))


def _written(cur: sqlite3.Cursor) -> Written:
    return Written(cur.rowcount, cur.lastrowid)


def _first_row(conn: sqlite3.Connection, sql: str, values: tuple[Any, ...]) -> Any:
    """The first row, with the statement closed before returning (no read snapshot left open)."""
    cursor = conn.execute(sql, values)
    try:
        return cursor.fetchone()
    finally:
        cursor.close()


class Transaction:
    """Statements inside one :meth:`Database.transaction` (committed together or not at all).

    ``BEGIN IMMEDIATE`` travels with the first statement (one round trip less per transaction).
    """

    def __init__(self, db: DbAccess) -> None:
        self._db = db
        self.begun = False

    def _begin(self, conn: sqlite3.Connection) -> None:
        if not self.begun:
            conn.execute("BEGIN IMMEDIATE")
            self.begun = True

    async def execute(self, sql: str, args: Iterable[Any] = ()) -> Written:
        """Run one statement in the transaction."""
        values = tuple(args)

        def work(conn: sqlite3.Connection) -> Written:
            self._begin(conn)
            return _written(conn.execute(sql, values))

        return await self._db._on_thread(work)

    async def fetchone(self, sql: str, args: Iterable[Any] = ()) -> Any:
        """One row, read inside the transaction."""
        values = tuple(args)

        def work(conn: sqlite3.Connection) -> Any:
            self._begin(conn)
            return conn.execute(sql, values).fetchone()

        return await self._db._on_thread(work)

    async def append_event(self, kind: str, actor: str, payload: dict[str, Any], session: str | None = None) -> int:
        """Append one event as part of the transaction; returns its id."""
        written = await self.execute(INSERT_EVENT, event_row(kind, actor, payload, session))
        assert written.lastrowid is not None
        return written.lastrowid


class DbAccess:
    """Typed access to the application database. The core of ``memory.db.Database``.

    The statements of one write (and a read with its rows) go to SQLite's thread in one round trip:
    on a loaded machine each round trip costs a thread wake-up on both sides, which the reply
    path pays several times per message otherwise.
    """

    def __init__(self, conn: aiosqlite.Connection, reader: aiosqlite.Connection, install: Install) -> None:
        """``reader`` (a read-only connection to the same file) serves :meth:`read_one` and the
        message recalls, so a prompt's reads do not queue behind other chats' writes. ``install`` is
        the data dir's secret and id (``memory.install``)."""
        self.install = install
        self._conn = conn
        self._reader = reader or conn
        self._term_counts = TermCounts("message_fts_terms")  # used on the reader's thread only
        self._lock = asyncio.Lock()
        self._writes = Grouped(conn, in_one_transaction, self._lock, name="sqlite-writes")
        self._reads = Grouped(self._reader, each, name="sqlite-reads")

    async def _on_thread(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on the writer's thread, in order with every other call on it."""
        return await on_thread(self._conn, work)

    async def _on_reader(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on the reader's thread (grouped with other reads waiting for it): it sees only
        what is committed."""
        return await self._reads.run(work)

    async def read_one(self, sql: str, args: Iterable[Any] = ()) -> Any:
        """The first row of a query of committed data, on the reader (waits for no write)."""
        values = tuple(args)
        return await self._on_reader(lambda conn: _first_row(conn, sql, values))

    async def run_transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` (synchronous, plain ``sqlite3``) in one transaction; returns once it is committed.

        For writes whose statements are known up front; :meth:`transaction` when code must await
        between statements. Writes that arrive while others are being written go to SQLite's thread
        together next, in one transaction with a savepoint each (group commit): each is still all or
        nothing and fails or succeeds on its own (``memory.grouped.in_one_transaction``), and under
        load, when many conversations write at once, they share one round trip and one commit
        instead of one each. So ``work`` must not commit or roll back itself, and must be safe to run
        again after a rollback: statements on the connection, no other side effect.
        """
        return await self._writes.run(work)

    @property
    def connection(self) -> aiosqlite.Connection:
        """The underlying connection (for reads by modules that own their own tables)."""
        return self._conn

    async def script(self, sql: str) -> None:
        """Run a schema script (``CREATE ... IF NOT EXISTS``) and commit."""
        async with self._lock:
            await self._conn.executescript(sql)
            await self._conn.commit()

    async def write(self, sql: str, args: Iterable[Any] = ()) -> Written:
        """One statement, committed (as a :meth:`run_transaction` of its own)."""
        values = tuple(args)
        return await self.run_transaction(lambda conn: _written(conn.execute(sql, values)))

    async def _rollback(self) -> None:
        if self._conn.in_transaction:
            await self._conn.rollback()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Several statements committed together (``BEGIN IMMEDIATE``: other processes wait)."""
        async with self._lock:
            tx = Transaction(self)
            try:
                yield tx
                if tx.begun:
                    await self._conn.commit()
            except BaseException:
                await self._rollback()
                raise

    async def fetchall(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        """Every row of a query."""
        # One call on the connection's thread: a cursor left open between two calls would keep its
        # read snapshot, and a write queued in between (by another coroutine) would then fail at
        # once with "database is locked" (SQLITE_BUSY_SNAPSHOT) whenever the other connection had
        # committed since.
        return list(await self._conn.execute_fetchall(sql, tuple(args)))

    async def fetchone(self, sql: str, args: Iterable[Any] = ()) -> Any:
        """The first row of a query, or None (use it for queries that return one row)."""
        values = tuple(args)
        return await self._on_thread(lambda conn: _first_row(conn, sql, values))

    async def append_event(self, kind: str, actor: str, payload: dict[str, Any], session: str | None = None) -> int:
        """Append one event; returns its id."""
        written = await self.write(INSERT_EVENT, event_row(kind, actor, payload, session))
        assert written.lastrowid is not None
        return written.lastrowid
