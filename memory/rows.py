"""A store's row dataclass read from its table: the columns are named by the dataclass's fields, in their
order, and each value is decoded by its field's type, so a column is declared in the row alone (and in the
table's schema).

How a value is stored: a ``datetime`` as ISO 8601 text (empty or NULL for none), a ``tuple`` or a ``dict``
or a ``list`` as JSON text (a tuple of dataclasses as a JSON list of their values, in field order), a
``bool`` as 0 or 1; anything else as it is.
"""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar, Union, get_args, get_origin, get_type_hints

R = TypeVar("R")


class RowReader(Generic[R]):
    """Reads rows of ``columns`` (every field of the dataclass ``row``) into ``row`` instances."""

    def __init__(self, row: type[R], names: Mapping[str, str] | None = None) -> None:
        """``names``: the column of a field named otherwise."""
        hints = get_type_hints(row)
        fields = [field.name for field in dataclasses.fields(row)]  # type: ignore[arg-type]
        self._row = row
        self._decode = [_decoder(hints[name]) for name in fields]
        self.columns = ", ".join((names or {}).get(name, name) for name in fields)
        """The columns to select, in field order."""

    def __call__(self, values: Sequence[Any]) -> R:
        """One row."""
        return self._row(*(decode(value) for decode, value in zip(self._decode, values, strict=True)))


def _decoder(annotation: Any) -> Callable[[Any], Any]:
    optional = False
    if get_origin(annotation) in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        optional = len(args) < len(get_args(annotation))
        annotation = args[0] if len(args) == 1 else Any
    origin = get_origin(annotation)
    if annotation is datetime:
        return lambda value: datetime.fromisoformat(value) if value else None
    if annotation is bool:
        return bool
    if origin is tuple:
        item = get_args(annotation)[0]
        if dataclasses.is_dataclass(item):
            return lambda value: tuple(item(*values) for values in json.loads(value))  # type: ignore[operator]
        return lambda value: tuple(json.loads(value))
    if annotation in (dict, list) or origin in (dict, list):
        if optional:
            return lambda value: json.loads(value) if value else None
        return json.loads
    return lambda value: value
