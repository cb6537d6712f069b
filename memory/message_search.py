"""Messages found again: full-text search of the messages in the event log (``/memory`` search, the
model's search tool) and the recall of earlier messages for a prompt, at a flat cost as the log grows."""

from __future__ import annotations

import sqlite3
import unicodedata
from collections.abc import Iterable
from typing import Any

from memory.db_access import DbAccess
from memory.db_schema import MESSAGE_KINDS, Event, event_from_row

RECALL_TERMS = 4
"""At most how many of a query's rarest words :meth:`Database.recall_messages` looks for."""

RECALL_WINDOW = 500
"""At most how many messages it ranks: the words are taken rarest first while their messages fit."""


class MessageSearch(DbAccess):
    """Search and recall of messages (part of ``memory.db.Database``)."""

    async def search_messages(
        self, words: Iterable[str], limit: int, session: str | None = None, kinds: tuple[str, ...] = MESSAGE_KINDS
    ) -> list[Event]:
        """Messages matching any of ``words`` (full-text, best match first, then newest)."""
        terms = [w.replace('"', "") for w in words if w.replace('"', "").strip()]
        if not terms:
            return []
        match = " OR ".join(f'"{t}"' for t in terms)
        sql = (
            "SELECT e.id, e.at, e.actor, e.session, e.kind, e.payload "
            "FROM message_fts f JOIN events e ON e.id = f.rowid "
            f"WHERE message_fts MATCH ? AND e.kind IN ({', '.join('?' * len(kinds))})"
        )
        args: list[Any] = [match, *kinds]
        if session is not None:
            sql += " AND e.session = ?"
            args.append(session)
        sql += " ORDER BY f.rank, e.id DESC LIMIT ?"
        args.append(limit)
        return [event_from_row(r) for r in await self.fetchall(sql, args)]

    async def recall_messages(
        self, words: Iterable[str], limit: int, kinds: tuple[str, ...] = ("message.in",), before: int | None = None
    ) -> list[Event]:
        """Earlier messages for a prompt: those sharing the query's rarest words, best match first;
        messages ``/forget`` removed from memory are left out, and so are events from ``before`` on
        (a turn recalls only what was said before the message it answers).

        Its cost stays flat as the log grows: at most ``RECALL_WINDOW`` messages are ranked (an OR of
        every word would rank every message with a common one: 20 ms at 20k events, and growing), and
        the words' document counts are reused until the log has grown (``memory.term_counts``). A rare
        word (a name, an invoice number) reaches all the way back; when even the rarest word is common,
        its newest messages are ranked.
        """
        terms = sorted({_index_form(w) for w in words if w.strip()})
        if not terms:
            return []
        kind_marks = ", ".join("?" * len(kinds))
        ceiling = before if before is not None else 2**63 - 1

        def work(conn: sqlite3.Connection) -> list[Any]:
            (log_size,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
            counts = self._term_counts.documents(conn, terms, log_size)
            rare: list[str] = []
            matches = 0
            for term in sorted((t for t in terms if counts[t]), key=lambda t: (counts[t], t))[:RECALL_TERMS]:
                if rare and matches + counts[term] > RECALL_WINDOW:
                    break  # a commoner word would only bring recent messages in
                rare.append(term)
                matches += counts[term]
            if not rare:
                return []
            match = " OR ".join(f'"{term}"' for term in rare)
            floor = 0
            if matches > RECALL_WINDOW:  # even the rarest word is common: rank its newest messages only
                (floor,) = conn.execute(
                    "SELECT MIN(rowid) FROM (SELECT rowid FROM message_fts WHERE message_fts MATCH ? AND rowid < ? "
                    "ORDER BY rowid DESC LIMIT ?)",
                    (match, ceiling, RECALL_WINDOW),
                ).fetchone()
            return conn.execute(
                "WITH best AS (SELECT rowid, rank FROM message_fts WHERE message_fts MATCH ? AND rowid >= ? "
                "AND rowid < ? ORDER BY rank LIMIT ?) "
                "SELECT e.id, e.at, e.actor, e.session, e.kind, e.payload FROM best JOIN events e ON e.id = best.rowid "
                f"WHERE e.kind IN ({kind_marks}) AND NOT EXISTS (SELECT 1 FROM events x WHERE "
                "x.kind = 'memory.forgotten' AND json_extract(x.payload, '$.ref') = 'msg-' || e.id) "
                "ORDER BY best.rank, e.id DESC LIMIT ?",
                (match, floor or 0, ceiling, limit * 4, *kinds, limit),
            ).fetchall()

        return [event_from_row(row) for row in await self._on_reader(work)]


def _index_form(word: str) -> str:
    """A word as the full-text index stores it (lower case, Latin diacritics removed)."""
    return "".join(c for c in unicodedata.normalize("NFKD", word.lower()) if not unicodedata.combining(c))
