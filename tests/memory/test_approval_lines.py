"""Approvals in a backup (``memory.approval_lines``), on real SQLite files: an approval comes back with its
cards and its outbox row, the row marked restored and reported; a line whose outbox row is another
approval's is refused; a line written before outbox rows kept their progress still imports."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from memory.approval_lines import ApprovalLine, ApprovalLines
from memory.approvals import ApprovalRow, ApprovalStore, CardRef
from memory.db import Database, open_database, utcnow

OPERATOR = "telegram:1001"


async def approved_and_sent(db: Database, approval_id: str) -> ApprovalStore:
    """An approval shown on a card, approved, its action claimed and sent."""
    store = ApprovalStore(db.connection)
    await store.setup(db.install)
    now = utcnow()
    await store.create(
        ApprovalRow(
            approval_id, approval_id, OPERATOR, "operator", "email.send", {"to": "ana@example.com"}, "digest",
            (OPERATOR,), "nonce", now, now + timedelta(hours=1), "pending", None, None, (), {"goal_id": "g-1"},
        )
    )  # fmt: skip
    await store.add_card(approval_id, CardRef("telegram", "1001", None, "55"))
    assert await store.decide(approval_id, "nonce", "approved", OPERATOR, outbox_key=f"key-{approval_id}")
    assert await store.claim_due(utcnow(), owner="proc-1") is not None
    await store.save_progress(approval_id, {"sent": True})
    assert await store.finish(approval_id, "sent", detail="250 OK", external_id="<m1@example.com>")
    return store


async def dump(db: Database) -> list[dict[str, Any]]:
    lines = ApprovalLines(db)
    await lines.setup()
    return await lines.dump()


async def test_an_approval_comes_back_with_its_cards_and_its_outbox_row_marked_restored(tmp_path: Path) -> None:
    async with open_database(tmp_path / "a") as db:
        store = await approved_and_sent(db, "ap-1")
        before = (await store.get("ap-1"), await store.outbox("ap-1"))
        dumped = await dump(db)
    assert [(line["id"], line["cards"], line["outbox"]["state"]) for line in dumped] == [
        ("ap-1", [{"channel": "telegram", "chat_id": "1001", "thread_id": None, "message_id": "55"}], "sent")
    ]
    async with open_database(tmp_path / "b") as db:
        lines = ApprovalLines(db)
        await lines.setup()
        await lines.restore([ApprovalLine.model_validate(line) for line in dumped])
        store = ApprovalStore(db.connection)
        outbox = await store.outbox("ap-1")
        assert await store.get("ap-1") == before[0]
        assert outbox is not None and before[1] is not None
        assert outbox == replace(before[1], restored=True)
        assert await store.unreported() == []  # its cards were edited where it ran
        assert await dump(db) == dumped


async def test_an_outbox_row_of_another_approval_is_refused(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        await approved_and_sent(db, "ap-1")
        (line,) = await dump(db)
    line["outbox"]["approval_id"] = "ap-2"
    with pytest.raises(ValidationError, match="its outbox row belongs to another approval"):
        ApprovalLine.model_validate(line)
    line["outbox"]["approval_id"] = "ap-1"
    line["state"] = "maybe"
    with pytest.raises(ValidationError, match="state"):
        ApprovalLine.model_validate(line)


async def test_a_line_from_before_outbox_rows_kept_their_progress_still_imports(tmp_path: Path) -> None:
    async with open_database(tmp_path / "a") as db:
        await approved_and_sent(db, "ap-1")
        (line,) = await dump(db)
    for newer in ("progress", "owner"):
        del line["outbox"][newer]
    del line["context"]
    async with open_database(tmp_path / "b") as db:
        lines = ApprovalLines(db)
        await lines.setup()
        await lines.restore([ApprovalLine.model_validate(line)])
        store = ApprovalStore(db.connection)
        outbox = await store.outbox("ap-1")
        approval = await store.get("ap-1")
    assert outbox is not None and (outbox.progress, outbox.owner, outbox.restored) == ({}, None, True)
    assert approval is not None and approval.context == {}


async def test_a_restore_that_fails_writes_no_approval_and_no_outbox_row(tmp_path: Path) -> None:
    async with open_database(tmp_path / "a") as db:
        await approved_and_sent(db, "ap-1")
        await approved_and_sent(db, "ap-2")
        dumped = [ApprovalLine.model_validate(line) for line in await dump(db)]
    async with open_database(tmp_path / "b") as db:
        lines = ApprovalLines(db)
        await lines.setup()
        await lines.restore(dumped[1:])
        with pytest.raises(sqlite3.IntegrityError):
            await lines.restore(dumped)
        assert [r[0] for r in await db.fetchall("SELECT id FROM approvals")] == ["ap-2"]
        assert [r[0] for r in await db.fetchall("SELECT approval_id FROM outbox")] == ["ap-2"]
