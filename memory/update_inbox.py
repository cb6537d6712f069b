"""At-most-once handling of platform deliveries (I3): a delivery is stored with its ``message.in`` event
before it is handled, and finished after; the reply journal records each send made while handling one, so
a replay after a crash skips what was already sent."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memory.db_access import INSERT_EVENT, DbAccess, dumps, event_row, utcnow

_INSERT_REPLY = "INSERT OR REPLACE INTO replies (update_key, seq, ids, at) VALUES (?, ?, ?, ?)"


@dataclass(frozen=True)
class Claim:
    """A delivery to store before it is handled: its key, conversation, payload, and the event to log."""

    update_key: str
    session: str
    payload: dict[str, Any]
    actor: str
    logged: dict[str, Any]


class UpdateInbox(DbAccess):
    """The inbox of deliveries and the reply journal (part of ``memory.db.Database``)."""

    async def claim_update(
        self, update_key: str, session: str, payload: dict[str, Any], actor: str, logged: dict[str, Any]
    ) -> int | None:
        """Record a delivery and its ``message.in`` event before handling it, in one commit.

        Returns the event id, or None when the delivery was seen before (drop it).
        """
        return (await self.claim_updates([Claim(update_key, session, payload, actor, logged)]))[0]

    async def claim_updates(self, claims: Sequence[Claim]) -> list[int | None]:
        """:meth:`claim_update` for several deliveries, all in one commit (all stored, or none)."""
        if not claims:
            return []
        rows = [
            (c.update_key, c.session, dumps(c.payload), event_row("message.in", c.actor, c.logged, c.session))
            for c in claims
        ]

        def work(conn: sqlite3.Connection) -> list[int | None]:
            ids: list[int | None] = []
            for update_key, session, stored, event in rows:
                claimed = conn.execute(
                    "INSERT OR IGNORE INTO inbox (update_key, session, payload, status, received_at) "
                    "VALUES (?, ?, ?, 'pending', ?)",
                    (update_key, session, stored, event[0]),
                )
                if claimed.rowcount != 1:
                    ids.append(None)
                    continue
                event_id = conn.execute(INSERT_EVENT, event).lastrowid
                conn.execute("UPDATE inbox SET event_id = ? WHERE update_key = ?", (event_id, update_key))
                ids.append(event_id)
            return ids

        return await self.run_transaction(work)

    async def finish_update(self, update_key: str) -> None:
        """Mark a claimed delivery as fully handled (its stored copy is dropped: the log has what may stay).

        Under load, finishes go together with other writes (:meth:`run_transaction`'s group commit).
        """
        await self.write(
            "UPDATE inbox SET status = 'done', done_at = ?, payload = '{}' WHERE update_key = ?",
            (utcnow().isoformat(), update_key),
        )

    async def pending_updates(self) -> list[tuple[str, dict[str, Any], int | None]]:
        """Deliveries claimed but not finished (a crash mid-handling): key, payload, event id; oldest first."""
        rows = await self.fetchall(
            "SELECT update_key, payload, event_id FROM inbox WHERE status = 'pending' ORDER BY received_at, rowid"
        )
        return [(r[0], json.loads(r[1]), r[2]) for r in rows]

    async def append_sent(
        self, payload: dict[str, Any], session: str, reply: tuple[str, int, list[str]] | None = None
    ) -> int:
        """Log a message the bot sent (``message.out``) and, while handling an update, its place in
        the reply journal (``reply``: update key, send number, message ids), in one commit."""
        event = event_row("message.out", "coo", payload, session)

        def work(conn: sqlite3.Connection) -> int:
            event_id = conn.execute(INSERT_EVENT, event).lastrowid
            if reply is not None:
                key, seq, ids = reply
                conn.execute(_INSERT_REPLY, (key, seq, json.dumps(ids), event[0]))
            assert event_id is not None
            return event_id

        return await self.run_transaction(work)

    async def sent_reply(self, update_key: str, seq: int) -> list[str] | None:
        """The message ids of the ``seq``-th send made for ``update_key``, if it was made."""
        row = await self.fetchone("SELECT ids FROM replies WHERE update_key = ? AND seq = ?", (update_key, seq))
        return list(json.loads(row[0])) if row else None
