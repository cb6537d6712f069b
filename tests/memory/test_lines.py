"""A store's backup line holds its row's fields, under the same names and types: a column added to a row
and not to its line (or a line field whose type drifts from its row's) would be lost or mangled by every
backup. Lines are derived from their rows (``memory.lines.row_line``); these tests hold that."""

from __future__ import annotations

import dataclasses
import types
from datetime import date, datetime
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

import pytest
from pydantic import AwareDatetime, BaseModel, Field, ValidationError

from memory.approval_lines import ApprovalLine, CardLine, OutboxLine
from memory.approvals import ApprovalRow, CardRef, OutboxRow
from memory.db import Event
from memory.event_log import EventLine
from memory.followups import Followup, FollowupLine
from memory.goal_evidence import Evidence, EvidenceLine
from memory.goal_lines import AttemptLine, GoalLine, TaskLine
from memory.lines import Line, row_line
from memory.notes import NoteLine, StoredNote
from memory.pipeline import NextLine, NextStep, StageLine, StageMove
from memory.records import Record, RecordLine
from memory.tasks import Attempt, Goal, Task

# (row, its line, fields only the line has (nested lines, an event id), fields a backup leaves out on purpose)
PAIRS: list[tuple[type, type[Line], set[str], set[str]]] = [
    (Event, EventLine, set(), set()),
    (CardRef, CardLine, set(), set()),
    (ApprovalRow, ApprovalLine, {"outbox"}, set()),
    (OutboxRow, OutboxLine, set(), {"restored"}),
    (Goal, GoalLine, {"tasks"}, set()),
    (Task, TaskLine, {"attempt_log"}, {"resumes"}),
    (Attempt, AttemptLine, set(), set()),
    (Followup, FollowupLine, set(), set()),
    (StoredNote, NoteLine, set(), set()),
    (Evidence, EvidenceLine, set(), set()),
    (Record, RecordLine, set(), set()),
    (StageMove, StageLine, set(), set()),
    (NextStep, NextLine, set(), set()),
]
LINE_OF = {row: line for row, line, _, _ in PAIRS}
# A field whose column (and line field) is named otherwise; times (and days) a line keeps as the text the store
# wrote. A pydantic model in a row (a record's data) is its JSON object in the line.
RENAMED = {Followup: {"due": "due_at"}}
TIMES_AS_TEXT = {Followup, Evidence, Record, StageMove, NextStep}
DAYS_AS_TEXT = {NextStep}


def _plain(annotation: Any) -> Any:
    """A type as a row would hold it: a list as a tuple, an aware time as a time, a line as its row."""
    if get_origin(annotation) is Annotated:
        return _plain(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return frozenset(_plain(arg) for arg in get_args(annotation))
    if get_origin(annotation) in (list, tuple):
        return ("seq", _plain(get_args(annotation)[0]))
    if annotation is AwareDatetime:
        return datetime
    rows = {line: row for row, line in LINE_OF.items()}
    return rows.get(annotation, annotation)


@pytest.mark.parametrize(("row", "line", "line_only", "left_out"), PAIRS, ids=[p[1].__name__ for p in PAIRS])
def test_a_line_holds_its_rows_fields_with_their_types(
    row: type, line: type[Line], line_only: set[str], left_out: set[str]
) -> None:
    hints = get_type_hints(row)
    renamed = RENAMED.get(row, {})
    row_fields = {
        renamed.get(f.name, f.name): _plain(hints[f.name]) for f in dataclasses.fields(row) if f.name not in left_out
    }
    if row in TIMES_AS_TEXT:
        row_fields = {name: str if kind is datetime else kind for name, kind in row_fields.items()}
    if row in DAYS_AS_TEXT:
        row_fields = {name: str if kind is date else kind for name, kind in row_fields.items()}
    row_fields = {
        name: dict[str, Any] if isinstance(kind, type) and issubclass(kind, BaseModel) else kind
        for name, kind in row_fields.items()
    }
    line_fields = {
        name: _plain(field.annotation if not field.metadata else Annotated[field.annotation, *field.metadata])
        for name, field in line.model_fields.items()
        if name not in line_only
    }
    assert line_fields == row_fields


def test_a_line_refuses_a_key_its_row_does_not_have_and_needs_every_field() -> None:
    event = {"id": 1, "at": "2026-01-01T00:00:00+00:00", "actor": "coo", "session": None, "kind": "k", "payload": {}}
    assert EventLine.model_validate(event).kind == "k"
    with pytest.raises(ValidationError, match="extra"):
        EventLine.model_validate({**event, "colour": "red"})
    with pytest.raises(ValidationError, match="payload"):
        EventLine.model_validate({k: v for k, v in event.items() if k != "payload"})


def test_a_check_or_a_default_for_a_field_the_row_does_not_have_is_refused() -> None:
    with pytest.raises(TypeError, match="no field colour"):
        row_line(Event, checks={"colour": Field(min_length=1)})
    with pytest.raises(TypeError, match="no field kinds"):
        row_line(Event, drop=("kinds",))


class _Data(BaseModel):
    name: str


@dataclasses.dataclass(frozen=True)
class _Row:
    data: _Data
    due: date


def test_a_rows_model_is_its_json_object_and_a_day_is_text_where_the_store_keeps_text() -> None:
    as_text = row_line(_Row, days=str).model_validate({"data": {"name": "Ana"}, "due": "2026-01-02"})
    assert (as_text.data, as_text.due) == ({"name": "Ana"}, "2026-01-02")
    assert row_line(_Row).model_validate({"data": {}, "due": "2026-01-02"}).due == date(2026, 1, 2)
