"""Filters on the semantic tables, built as LanceDB expressions so no value is ever spliced into SQL.

LanceDB costs about a second of CPU to import, so it is loaded by the first filter built (semantic
memory in use), never by importing the product: with semantic memory off, ``coo run`` never loads it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lancedb.expr import Expr


def col(name: str) -> Expr:
    """The column ``name``."""
    from lancedb.expr import col as lance_col

    return lance_col(name)


def lit(value: Any) -> Expr:
    """The literal ``value``."""
    from lancedb.expr import lit as lance_lit

    return lance_lit(value)


def scope_is(scope: str) -> Expr:
    """Rows of one scope."""
    return col("scope") == lit(scope)


def first_part() -> Expr:
    """Notes rows that carry their note's text (a long note's first chunk)."""
    return col("part") == lit(0)


def is_(column: str, value: Any) -> Expr:
    """Rows whose ``column`` equals ``value``."""
    return col(column) == lit(value)


def among(column: str, values: Iterable[Any]) -> Expr:
    """Rows whose ``column`` is one of ``values``."""
    return col(column).isin(list(values))
