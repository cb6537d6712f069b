"""Cached full-text document counts, on a real SQLite FTS5 index."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from memory.term_counts import MIN_REGROWTH, TermCounts


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE fts USING fts5(text, content='')")
    db.execute("CREATE VIRTUAL TABLE fts_terms USING fts5vocab(fts, 'row')")
    yield db
    db.close()


def add(conn: sqlite3.Connection, *texts: str) -> None:
    (last,) = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM fts").fetchone()
    conn.executemany("INSERT INTO fts (rowid, text) VALUES (?, ?)", enumerate(texts, last + 1))


def vocab_reads(conn: sqlite3.Connection) -> list[str]:
    seen: list[str] = []
    conn.set_trace_callback(lambda sql: seen.append(sql) if "fts_terms" in sql else None)
    return seen


def test_counts_match_the_index_and_absent_words_count_zero(conn: sqlite3.Connection) -> None:
    add(conn, "orbit coffee pays", "orbit invoice", "plants need water")
    counts = TermCounts("fts_terms").documents(conn, ["orbit", "water", "zebra"], log_size=3)
    assert counts == {"orbit": 2, "water": 1, "zebra": 0}


def test_a_count_is_reused_until_the_log_has_grown(conn: sqlite3.Connection) -> None:
    add(conn, "orbit coffee pays", "orbit invoice")
    counts = TermCounts("fts_terms")
    reads = vocab_reads(conn)
    assert counts.documents(conn, ["orbit", "zebra"], log_size=5000) == {"orbit": 2, "zebra": 0}
    assert len(reads) == 1
    add(conn, "orbit again", "a zebra")
    # Within a tenth of growth: the old counts, no read at all.
    assert counts.documents(conn, ["zebra", "orbit"], log_size=5500) == {"orbit": 2, "zebra": 0}
    assert len(reads) == 1
    # A new word alone is counted; the cached ones are not read again.
    assert counts.documents(conn, ["orbit", "again"], log_size=5500) == {"orbit": 2, "again": 1}
    assert len(reads) == 2 and "'again'" in reads[-1] and "'orbit'" not in reads[-1]
    # Past a tenth of growth: counted again, up to date.
    assert counts.documents(conn, ["orbit", "zebra"], log_size=5501) == {"orbit": 3, "zebra": 1}
    assert len(reads) == 3


def test_a_small_log_recounts_after_min_regrowth_events(conn: sqlite3.Connection) -> None:
    add(conn, "orbit")
    counts = TermCounts("fts_terms")
    assert counts.documents(conn, ["orbit"], log_size=10) == {"orbit": 1}
    add(conn, "orbit")
    assert counts.documents(conn, ["orbit"], log_size=10 + MIN_REGROWTH) == {"orbit": 1}
    assert counts.documents(conn, ["orbit"], log_size=11 + MIN_REGROWTH) == {"orbit": 2}


def test_the_cache_starts_over_past_its_bound(conn: sqlite3.Connection) -> None:
    add(conn, "alpha beta gamma delta")
    counts = TermCounts("fts_terms", max_terms=3)
    reads = vocab_reads(conn)
    counts.documents(conn, ["alpha", "beta"], log_size=1)
    counts.documents(conn, ["gamma", "delta"], log_size=1)  # 4 > 3: cleared, then these two kept
    counts.documents(conn, ["gamma", "delta"], log_size=1)
    assert len(reads) == 2
    assert counts.documents(conn, ["alpha"], log_size=1) == {"alpha": 1}
    assert len(reads) == 3
