"""How many messages each full-text term occurs in, counted once and reused while the log grows little.

Picking a query's rarest words (``Database.recall_messages``) needs each word's document count.
SQLite's ``fts5vocab`` computes it by walking the word's whole list of documents in every index
segment, for every word of the query, on every prompt: for a chat message's ~20 words ~1.5 ms at
1,000 messages and ~2.7 ms at 10,000 inserted one by one, 3.8 ms at 50,000 in one segment (ad hoc),
most of a prompt's lexical recall; with the counts kept, ~0.015 ms. Counts change
slowly and only their order matters, so a count is kept until the event log has grown by a tenth
(at least ``MIN_REGROWTH`` events) since it was taken; only new or stale words are counted again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

MIN_REGROWTH = 200
"""A count stays in use until the log has this many more events, or a tenth more, whichever is larger."""
MAX_TERMS = 50_000
"""More distinct words than this and the cache starts over (memory bound)."""


class TermCounts:
    """Cached document counts of ``fts5vocab`` terms. Not thread-safe: use it from one connection's thread."""

    def __init__(self, vocab_table: str, max_terms: int = MAX_TERMS) -> None:
        self._table = vocab_table
        self._max_terms = max_terms
        self._counts: dict[str, tuple[int, int]] = {}  # term -> (documents, log size when counted)

    def documents(self, conn: sqlite3.Connection, terms: Sequence[str], log_size: int) -> dict[str, int]:
        """Each term's document count (0 when absent); ``log_size`` measures growth (e.g. the newest event id)."""
        stale = [term for term in terms if not self._fresh(term, log_size)]
        if stale:
            if len(self._counts) + len(stale) > self._max_terms:
                self._counts.clear()
            found = dict(
                conn.execute(
                    f"SELECT term, doc FROM {self._table} WHERE term IN ({', '.join('?' * len(stale))})", stale
                ).fetchall()
            )
            for term in stale:
                self._counts[term] = (int(found.get(term, 0)), log_size)
        return {term: self._counts[term][0] for term in terms}

    def _fresh(self, term: str, log_size: int) -> bool:
        entry = self._counts.get(term)
        if entry is None:
            return False
        counted_at = entry[1]
        return log_size - counted_at <= max(MIN_REGROWTH, counted_at // 10)
