"""``RowReader``: a row dataclass read from its table by its fields' names and types, so a column added to a
row is selected and decoded with no other edit."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from memory.approval_rows import ApprovalRow, CardRef, OutboxRow, read_approval, read_outbox
from memory.rows import RowReader

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_the_columns_are_the_fields_in_order_with_renames() -> None:
    @dataclasses.dataclass(frozen=True)
    class Reminder:
        id: int
        due: datetime

    assert RowReader(Reminder).columns == "id, due"
    assert RowReader(Reminder, names={"due": "due_at"}).columns == "id, due_at"
    assert read_outbox.columns.split(", ") == [f.name for f in dataclasses.fields(OutboxRow)]


def test_values_are_decoded_by_their_fields_types() -> None:
    card = ["telegram", "1001", None, "55"]
    row = (
        "ap-1", "ap-1", "t", "operator", "email.send", json.dumps({"to": "a@example.com"}), "digest",
        json.dumps(["telegram:1001"]), "nonce", AT.isoformat(), AT.isoformat(), "pending", None, None,
        json.dumps([card]), "{}",
    )  # fmt: skip
    assert read_approval(row) == ApprovalRow(
        "ap-1", "ap-1", "t", "operator", "email.send", {"to": "a@example.com"}, "digest", ("telegram:1001",),
        "nonce", AT, AT, "pending", None, None, (CardRef("telegram", "1001", None, "55"),), {},
    )  # fmt: skip
    outbox = read_outbox(
        ("ap-1", "k", "email.send", "{}", "d", "sent", 1, AT.isoformat(), "", None, AT.isoformat(), "{}", None, 1)
    )
    assert outbox.restored is True and outbox.next_attempt_at == AT and outbox.external_id is None


def test_a_row_of_another_shape_is_refused_not_read_askew() -> None:
    with pytest.raises(ValueError, match="zip"):
        read_outbox(("ap-1", "k", "email.send"))
