"""Filters carry values as literals: a hostile scope or ref never becomes SQL (lancedb is pinned, so is its SQL)."""

from __future__ import annotations

from memory.semantic.filters import among, first_part, is_, scope_is


def test_values_are_quoted_literals_whatever_they_contain() -> None:
    assert scope_is("a' OR '1'='1").to_sql() == "(`scope` = 'a'' OR ''1''=''1')"
    assert (is_("ref", "x") & first_part()).to_sql() == "((`ref` = 'x') AND (`part` = 0))"
    assert among("id", ["a", "b'; DROP TABLE notes; --"]).to_sql() == "id IN ('a', 'b''; DROP TABLE notes; --')"
