"""A backup line and the table it comes from: the SQL that reads and writes a portable store's rows is
derived from its line model, so a table's layout is declared once, next to the store (``memory.portable``).

A store's line is derived from its row dataclass by :func:`row_line` (the row's fields, their types as a
line carries them: a pydantic model as its JSON object, a time or a day as ISO 8601 text where the store keeps
the text it wrote), so a column is declared in the row alone.

A field typed as a ``dict`` or a ``list`` is a column of JSON text, a ``bool`` an integer 0 or 1, a
``datetime`` ISO 8601 text; other values are stored as they are. Times are read back as the text
stored (ISO 8601), never re-formatted.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import types
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

from pydantic import BaseModel, ConfigDict, create_model
from pydantic.fields import FieldInfo


class Line(BaseModel):
    """One line of an export: every field is the line's own, no other key is accepted."""

    model_config = ConfigDict(extra="forbid")


def row_line(
    row: type,
    *,
    drop: Iterable[str] = (),
    checks: Mapping[str, FieldInfo] | None = None,
    defaults: Mapping[str, Any] | None = None,
    nested: Mapping[type, type[Line]] | None = None,
    times: Any = datetime,
    days: Any = date,
    names: Mapping[str, str] | None = None,
) -> Any:
    """A :class:`Line` with the fields of the dataclass ``row``, less ``drop`` (columns a backup does not
    carry), as a line holds them: a tuple as a list, a dataclass of ``nested`` as its line, a time as
    ``times`` (``AwareDatetime``, or ``str`` for a store that keeps its times as text it wrote), a day as
    ``days`` (``str`` likewise), a pydantic model as its JSON object (``dict[str, Any]``); ``names`` renames
    a field whose column is named otherwise. ``checks`` add constraints to a field (``Field(ge=0)``);
    ``defaults`` give the value a line written before the field existed gets (no row default is carried
    otherwise, so a line must hold every other field). A store subclasses the result to add nested lines and
    cross-checks (``memory.approval_lines``)::

        _OutboxFields: Any = row_line(OutboxRow, drop=("restored",))

        class OutboxLine(_OutboxFields): ...

    Typed ``Any`` because the model is built at run time; the subclass is what callers name."""
    dropped = set(drop)
    hints = get_type_hints(row)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(row):
        if field.name in dropped:
            continue
        annotation = _line_type(hints[field.name], nested or {}, times, days)
        if checks and field.name in checks:
            annotation = Annotated[annotation, checks[field.name]]
        fields[(names or {}).get(field.name, field.name)] = (annotation, (defaults or {}).get(field.name, ...))
    unknown = dropped.union(checks or {}, defaults or {}, names or {}) - {f.name for f in dataclasses.fields(row)}
    if unknown:
        raise TypeError(f"{row.__name__} has no field {', '.join(sorted(unknown))}")
    return create_model(f"{row.__name__}Fields", __base__=Line, __module__=row.__module__, **fields)


def _line_type(annotation: Any, nested: Mapping[type, type[Line]], times: Any, days: Any) -> Any:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return Union[tuple(_line_type(arg, nested, times, days) for arg in get_args(annotation))]  # noqa: UP007
    if origin is tuple:
        return list[_line_type(get_args(annotation)[0], nested, times, days)]  # type: ignore[misc]
    if annotation is datetime:
        return times
    if annotation is date:
        return days
    if annotation in nested:
        return nested[annotation]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        # Which model the object is depends on the row (a record's kind): the store's line checks it.
        return dict[str, Any]
    return annotation


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
