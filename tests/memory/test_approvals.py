"""The approval store's edit requests: kept in SQLite, answered from memory for threads without one."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from memory.approvals import ApprovalRow, ApprovalStore
from memory.db import open_database, utcnow

THREAD = "telegram:1001"


async def pending_card(store: ApprovalStore, approval_id: str) -> None:
    now = utcnow()
    await store.create(
        ApprovalRow(
            approval_id, approval_id, THREAD, "operator", "email.send", {"to": "a@example.com"}, "digest",
            ("operator",), "nonce", now, now + timedelta(hours=1), "pending", None, None, (),
        )
    )  # fmt: skip


async def test_an_edit_request_is_taken_once(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        store = ApprovalStore(db.connection)
        await store.setup()
        assert await store.take_edit_request(THREAD) is None
        await store.request_edit(THREAD, "ap-1")
        assert await store.take_edit_request("telegram:2002") is None  # another conversation
        assert await store.take_edit_request(THREAD) == "ap-1"
        assert await store.take_edit_request(THREAD) is None


async def test_an_edit_request_survives_a_restart(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        store = ApprovalStore(db.connection)
        await store.setup()
        assert await store.take_edit_request(THREAD) is None  # the store has read the table (empty)
        await store.request_edit(THREAD, "ap-1")
    async with open_database(tmp_path) as db:
        restarted = ApprovalStore(db.connection)
        await restarted.setup()
        assert await restarted.take_edit_request(THREAD) == "ap-1"


async def test_a_decided_card_ends_its_edit_request_and_a_new_one_is_seen(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        store = ApprovalStore(db.connection)
        await store.setup()
        await pending_card(store, "ap-1")
        await store.request_edit(THREAD, "ap-1")
        assert await store.decide("ap-1", "nonce", "rejected", "operator")
        assert await store.take_edit_request(THREAD) is None  # the next message is an ordinary one
        await pending_card(store, "ap-2")
        await store.request_edit(THREAD, "ap-2")
        assert await store.take_edit_request(THREAD) == "ap-2"
