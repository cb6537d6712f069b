"""Stripe events as they arrived (polled or by webhook): stored once per event id, with the polling
cursor, before anything acts on them (I3); handled at most once each."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memory.db import Database, utcnow

SCHEMA = """
CREATE TABLE IF NOT EXISTS stripe_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    created INTEGER NOT NULL,
    object_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at TEXT NOT NULL,
    handled INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS stripe_events_todo ON stripe_events(handled, seq);
"""
CURSOR_KEY = "stripe.events.cursor"


@dataclass(frozen=True)
class StripeEvent:
    """One event: its id, type, when Stripe made it, the object it is about and that object's fields."""

    id: str
    type: str
    created: int
    object_id: str
    data: dict[str, Any]


class StripeEventStore:
    """The ``stripe_events`` table and the polling cursor (in the ``kv`` table, moved with the events)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def setup(self) -> None:
        """Create the table."""
        await self._db.script(SCHEMA)

    async def cursor(self) -> dict[str, Any] | None:
        """The newest event polled so far (``{"id", "created"}``), or None before the first poll."""
        row = await self._db.fetchone("SELECT value FROM kv WHERE key = ?", (CURSOR_KEY,))
        return dict(json.loads(row[0])) if row else None

    async def add(self, events: Sequence[StripeEvent], cursor: dict[str, Any] | None = None) -> int:
        """Store the events not seen before and, with ``cursor``, move the cursor in the same transaction:
        the cursor never passes an event that is not stored. Returns how many were new."""
        now = utcnow().isoformat()
        rows = [(e.id, e.type, e.created, e.object_id, json.dumps(e.data), now) for e in events]

        def work(conn: sqlite3.Connection) -> int:
            new = 0
            for row in rows:
                new += conn.execute(
                    "INSERT OR IGNORE INTO stripe_events (id, type, created, object_id, payload, received_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    row,
                ).rowcount
            if cursor is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO kv (key, value, updated_at) VALUES (?, ?, ?)",
                    (CURSOR_KEY, json.dumps(cursor), now),
                )
            return new

        return await self._db.run_transaction(work)

    async def unhandled(self, limit: int = 500) -> list[StripeEvent]:
        """Stored events not yet acted on, in the order Stripe made them."""
        rows = await self._db.fetchall(
            "SELECT id, type, created, object_id, payload FROM stripe_events WHERE handled = 0 "
            "ORDER BY created, seq LIMIT ?",
            (limit,),
        )
        return [StripeEvent(r[0], r[1], int(r[2]), r[3], json.loads(r[4])) for r in rows]

    async def mark_handled(self, event_id: str) -> None:
        """The event's effects are done."""
        await self._db.write("UPDATE stripe_events SET handled = 1 WHERE id = ?", (event_id,))

    async def count(self) -> int:
        """How many events are stored."""
        row = await self._db.fetchone("SELECT COUNT(*) FROM stripe_events")
        return int(row[0])
