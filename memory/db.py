"""The application's SQLite database: event log, inbox (dedupe), reply journal, model-call ledger.

Its parts, one module each: the connection and how stores read and write through it
(``memory.db_access``), its tables and migrations (``memory.db_schema``), the inbox of deliveries and the
reply journal (``memory.update_inbox``), message search and recall (``memory.message_search``). This module
holds the event log's own reads and writes and opens the database.
The event log is append-only: this module offers no way to delete an event or change it, and SQLite
triggers refuse it, with one exception: ``/forget`` may redact a message's text (the row stays, its
text becomes ``FORGOTTEN_TEXT``; :meth:`Database.redact_message`).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from memory.db_access import Transaction, Written, clean_text, dumps, utcnow
from memory.db_schema import EVENT_COLUMNS, FORGOTTEN_TEXT, MESSAGE_KINDS, Event, event_from_row, migrate
from memory.install import load_install
from memory.message_search import RECALL_TERMS, RECALL_WINDOW, MessageSearch
from memory.update_inbox import Claim, UpdateInbox

__all__ = [
    "FORGOTTEN_TEXT", "MESSAGE_KINDS", "RECALL_TERMS", "RECALL_WINDOW", "Claim", "Database", "Event", "LLMCall",
    "Transaction", "Written", "clean_text", "connect_reader", "connect_sqlite", "dumps", "open_database", "utcnow",
]  # fmt: skip


@dataclass(frozen=True)
class LLMCall:
    """One model call as recorded in the ledger."""

    session: str | None
    workflow: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    estimated: bool
    latency_ms: int
    outcome: str
    cost: float = 0.0


class Database(UpdateInbox, MessageSearch):
    """Typed access to the application database. Construct with :func:`open_database`.

    The statements of one write (and a read with its rows) go to SQLite's thread in one round trip:
    on a loaded machine each round trip costs a thread wake-up on both sides, which the reply
    path pays several times per message otherwise.
    """

    async def migrate(self) -> None:
        """Create the tables, and fill indexes that older files did not have (``memory.db_schema``)."""
        await migrate(self)

    async def redact_message(self, event_id: int) -> bool:
        """Replace the text of message ``event_id`` with ``FORGOTTEN_TEXT`` in the log and drop it from the
        full-text index, in one commit; True when a message's text was redacted (False: no such message,
        or redacted already). The row stays, so the log still shows that a message came then.
        """

        def work(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                f"SELECT kind, payload FROM events WHERE id = ? AND kind IN {MESSAGE_KINDS}", (event_id,)
            ).fetchone()
            if row is None:
                return False
            payload = json.loads(row[1])
            if payload.get("redacted") is True:
                return False
            # The index is contentless: a row is removed by giving it back the text it indexed.
            (indexed,) = conn.execute("SELECT json_extract(?, '$.text')", (row[1],)).fetchone()
            if indexed is not None:
                conn.execute(
                    "INSERT INTO message_fts (message_fts, rowid, text) VALUES ('delete', ?, ?)", (event_id, indexed)
                )
            redacted = {**payload, "text": FORGOTTEN_TEXT, "redacted": True}
            conn.execute("UPDATE events SET payload = ? WHERE id = ?", (dumps(redacted), event_id))
            return True

        return await self.run_transaction(work)

    async def events_by_id(self, ids: Sequence[int]) -> list[Event]:
        """The events with these ids, oldest first (read in chunks: SQLite bounds a statement's parameters)."""
        found: list[Event] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            rows = await self.fetchall(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE id IN ({', '.join('?' * len(chunk))}) ORDER BY id",
                chunk,
            )
            found += [event_from_row(r) for r in rows]
        return found

    async def events(
        self,
        kind: str | tuple[str, ...] | None = None,
        session: str | None = None,
        limit: int = 1000,
        since: datetime | None = None,
        after: int | None = None,
    ) -> list[Event]:
        """Events, oldest first, optionally filtered by kind (one or several), session, time and id."""
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE 1=1"
        args: list[Any] = []
        if kind is not None:
            kinds = (kind,) if isinstance(kind, str) else kind
            sql += f" AND kind IN ({', '.join('?' * len(kinds))})"
            args.extend(kinds)
        if session is not None:
            sql += " AND session = ?"
            args.append(session)
        if since is not None:
            sql += " AND at >= ?"
            args.append(since.astimezone(UTC).isoformat())  # stored times are UTC ISO strings
        if after is not None:
            sql += " AND id > ?"
            args.append(after)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        return [event_from_row(r) for r in await self.fetchall(sql, args)]


async def connect_sqlite(path: Path, busy_timeout_ms: int) -> aiosqlite.Connection:
    """Open a SQLite file in WAL mode with a busy timeout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(path, timeout=busy_timeout_ms / 1000)
    await conn.execute("PRAGMA journal_mode=WAL")
    await conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    await conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _read_only_uri(path: Path) -> str:
    return f"{path.absolute().as_uri()}?mode=ro"  # as_uri escapes what a URI would misread ("?", "#", "%")


async def connect_reader(path: Path, busy_timeout_ms: int) -> aiosqlite.Connection:
    """Open a read-only connection to a SQLite file already in WAL mode (readers never block its writer)."""
    conn = await aiosqlite.connect(_read_only_uri(path), uri=True, timeout=busy_timeout_ms / 1000)
    await conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    return conn


@asynccontextmanager
async def open_database(data_dir: Path, busy_timeout_ms: int = 5000) -> AsyncIterator[Database]:
    """Open (creating if needed) ``<data_dir>/coo.sqlite`` and close it on exit."""
    path = data_dir / "coo.sqlite"
    conn = await connect_sqlite(path, busy_timeout_ms)
    try:
        reader = await connect_reader(path, busy_timeout_ms)  # the file exists and is in WAL mode now
        try:
            db = Database(conn, reader, await asyncio.to_thread(load_install, data_dir))
            await db.migrate()
            yield db
        finally:
            await reader.close()
    finally:
        await conn.close()
