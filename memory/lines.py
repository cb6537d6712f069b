"""A backup line and the table it comes from: the SQL that reads and writes a portable store's rows is
derived from its line model, so a table's layout is declared once, next to the store (``memory.portable``).

A field typed as a ``dict`` or a ``list`` is a column of JSON text, a ``bool`` an integer 0 or 1, a
``datetime`` ISO 8601 text; other values are stored as they are. Times are read back as the text
stored (ISO 8601), never re-formatted.
"""

from __future__ import annotations

import json
import sqlite3
import types
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict


class Line(BaseModel):
    """One line of an export: every field is the line's own, no other key is accepted."""

    model_config = ConfigDict(extra="forbid")


def _is_json(annotation: Any) -> bool:
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_json(arg) for arg in get_args(annotation))
    return annotation in (dict, list) or get_origin(annotation) in (dict, list)


class Table:
    """The columns of ``table`` named by ``model``'s fields, less the ``nested`` ones (lines of another
    table carried inside the line, e.g. an approval's outbox row)."""

    def __init__(
        self,
        table: str,
        model: type[Line],
        nested: Iterable[str] = (),
        written: Mapping[str, Any] | None = None,
        kept_out: Iterable[str] = (),
    ) -> None:
        """``written``: columns not in the line, with the value every restored row gets; ``kept_out``: columns
        a backup leaves out on purpose (a restored row gets their default). Every other column of the table
        must be a field of the line (a test holds that)."""
        self.table = table
        self.kept_out = frozenset(kept_out)
        skip = set(nested)
        fields = {name: f for name, f in model.model_fields.items() if name not in skip}
        self.columns = tuple(fields)
        self._json = frozenset(n for n, f in fields.items() if _is_json(f.annotation))
        self._bool = frozenset(n for n, f in fields.items() if f.annotation is bool)
        self.written = dict(written or {})
        names = (*self.columns, *self.written)
        self._select = f"SELECT {', '.join(self.columns)} FROM {table}"
        self._insert = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"

    def select(self, tail: str = "") -> str:
        """``SELECT <columns> FROM <table> <tail>``."""
        return f"{self._select} {tail}".rstrip()

    def read(self, row: Any) -> dict[str, Any]:
        """A selected row as a plain line (JSON text parsed, flags as booleans)."""
        line = dict(zip(self.columns, row, strict=True))
        for name in self._json:
            if line[name] is not None:
                line[name] = json.loads(line[name])
        for name in self._bool:
            line[name] = bool(line[name])
        return line

    def values(self, line: Line, **given: Any) -> tuple[Any, ...]:
        """The row to insert for ``line``; ``given`` replaces a column's value as stored."""
        stored = [
            given[name] if name in given else _stored(name in self._json, getattr(line, name)) for name in self.columns
        ]
        return (*stored, *self.written.values())

    def insert(self, conn: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (made by :meth:`values`)."""
        conn.executemany(self._insert, rows)


def _stored(is_json: bool, value: Any) -> Any:
    if value is None:
        return None
    if is_json:
        return json.dumps(value, sort_keys=True)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    return value
