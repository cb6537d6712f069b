"""Ids that leave the process are unique to an install (approval ids, idempotency keys, Message-IDs), and
an upgrade from before install secrets keeps what was in flight working with the ids it was stored with."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

from bot.messages import InboundMessage
from bot.runtime import open_runtime
from graph.conversation.action_tools import approval_id_for
from memory.install import KEY_FILE, content_digest
from tests.conftest import RecordingChannel, make_settings, operator_message
from tests.fakes.smtp_server import SMTPServer

SESSION = "telegram:1001"


def command(text: str, update_key: str) -> InboundMessage:
    return InboundMessage("rec", "1001", SESSION, text, kind="command", update_key=update_key)


def approve_data(chan: RecordingChannel) -> str:
    card = next(m for m in reversed(chan.sent) if m.buttons and m.edit_message_id is None)
    return next(b.data for b in card.buttons if b.label == "Approve")


async def email_once(data_dir: Path, smtp: SMTPServer) -> tuple[str, str, str]:
    """The same chat, the same update id, the same email: (approval id, idempotency key, Message-ID)."""
    settings = make_settings(data_dir, smtp=smtp.settings(), outbox={"poll_s": 0.05})
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        before = len(smtp.delivered)  # counted before the press: the outbox may deliver at once
        await rt.dispatcher.handle(command("/email ana@example.org Hello | Same words", "telegram:update:42"))
        await rt.dispatcher.handle(operator_message("", kind="callback", data=approve_data(chan)))
        delivered = await smtp.wait_delivered(before + 1)
        [row] = await rt.approvals.store.list_approvals()
        outbox = await rt.approvals.store.outbox(row.id)
    assert outbox is not None
    return row.id, outbox.idempotency_key, str(delivered[-1].message["Message-ID"])


async def test_two_installs_never_share_an_approval_id_an_idempotency_key_or_a_message_id(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        first = await email_once(tmp_path / "one", smtp)
        second = await email_once(tmp_path / "two", smtp)
    for a, b in zip(first, second, strict=True):
        assert a != b
    for approval_id, key, message_id in (first, second):
        assert re.fullmatch(r"[0-9a-f]{12}", approval_id)  # as readable as before
        assert re.fullmatch(r"coo-[0-9a-f]{24}", key)
        assert message_id == f"<{key}@example.org>"  # RFC 5322 msg-id: unique left part, the sender's domain


def downgrade(data_dir: Path, legacy_name: str) -> dict[str, Any]:
    """Make ``data_dir`` look as a version before install secrets left it: no key file, unkeyed digests,
    keys and ids without an install part (the pending card stored under its bare name)."""
    (data_dir / KEY_FILE).unlink()
    with sqlite3.connect(data_dir / "coo.sqlite") as conn:
        conn.execute("DELETE FROM digests_keyed")
        for table, column in (("approvals", "id"), ("outbox", "approval_id")):
            for row_id, action in conn.execute(f"SELECT {column}, action FROM {table}").fetchall():
                digest = content_digest(json.loads(action))
                conn.execute(f"UPDATE {table} SET digest = ? WHERE {column} = ?", (digest, row_id))
        (queued_id,) = conn.execute("SELECT approval_id FROM outbox WHERE state = 'queued'").fetchone()
        legacy_key = "coo-" + hashlib.sha256(queued_id.encode()).hexdigest()[:24]
        conn.execute("UPDATE outbox SET idempotency_key = ? WHERE approval_id = ?", (legacy_key, queued_id))
        (pending_id,) = conn.execute("SELECT id FROM approvals WHERE state = 'pending'").fetchone()
        conn.execute("UPDATE approvals SET id = ?, root_id = ? WHERE id = ?", (legacy_name, legacy_name, pending_id))
    return {"queued": queued_id, "legacy_key": legacy_key}


async def test_after_the_upgrade_what_was_in_flight_runs_with_the_ids_it_was_stored_with(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SMTPServer() as smtp:
        settings = make_settings(data, smtp=smtp.settings(), outbox={"poll_s": 0.05})
        async with open_runtime(settings, console=False) as rt:
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            await rt.dispatcher.handle(command("/pause", "u:1"))
            await rt.dispatcher.handle(command("/email ana@example.org Approved | before the upgrade", "u:2"))
            await rt.dispatcher.handle(operator_message("", kind="callback", data=approve_data(chan)))
            await rt.dispatcher.handle(command("/email bob@example.org Pending | still on its card", "u:3"))
        legacy_name = approval_id_for(SESSION, "u:3")
        before = downgrade(data, legacy_name)

        async with open_runtime(settings, console=False) as rt:  # the upgraded version starts
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            # A replay of the update that proposed the pending card finds it under its old name.

            async def build() -> Any:
                raise AssertionError("the earlier proposal must be found, not built again")

            found = await rt.approvals.propose_once(legacy_name, build, SESSION, "command", SESSION)
            assert found.approval is not None and found.approval.id == legacy_name
            await rt.dispatcher.handle(command("/resume", "u:4"))
            [queued] = await smtp.wait_delivered(1)
            pending = await rt.approvals.store.get(legacy_name)
            assert pending is not None  # its card, shown before the upgrade, is pressed after it
            press = f"ap:{pending.id}:{pending.nonce}"
            await rt.dispatcher.handle(operator_message("", kind="callback", data=press))
            later = await smtp.wait_delivered(2)
    assert queued.message["Message-ID"] == f"<{before['legacy_key']}@example.org>"  # its original key
    assert "before the upgrade" in str(queued.message.get_payload())
    assert "still on its card" in str(later[-1].message.get_payload())
