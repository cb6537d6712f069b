"""Intake against a real Dovecot: read-only, never lost, never twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

from connectors.imap import MailIntake
from memory.db import open_database
from memory.mail import MailStore
from tests.fakes.dovecot import Dovecot
from tests.inbox.conftest import imap_settings
from tests.inbox.mails import mail


async def _intake(tmp_path: Path, dovecot: Dovecot, **extra: object) -> tuple[int, MailStore]:
    async with open_database(tmp_path) as db:
        store = MailStore(db)
        await store.setup()
        new = await MailIntake(imap_settings(dovecot, **extra), store).sync_once()
        return new, store


async def test_new_mail_is_stored_once_and_left_unread(tmp_path: Path, dovecot: Dovecot) -> None:
    for n in range(3):
        await asyncio.to_thread(dovecot.append, mail(f"Offer {n}", message_id=f"<m{n}@acme.test>"))
    async with open_database(tmp_path) as db:
        store = MailStore(db)
        await store.setup()
        intake = MailIntake(imap_settings(dovecot), store)
        assert await intake.sync_once() == 3
        assert await intake.sync_once() == 0
        assert await store.count() == 3
        assert await store.cursor("INBOX") is not None
        first = await store.by_message_id("<m0@acme.test>")
        assert first is not None
        assert (first.record.from_addr, first.record.from_name, first.record.subject) == (
            "ana@acme.test",
            "Ana Lima",
            "Offer 0",
        )
        assert first.record.body.strip() == "Hi there"
    flags = await asyncio.to_thread(dovecot.flags)
    assert len(flags) == 3
    assert all(b"\\Seen" not in f for f in flags.values())


async def test_same_message_in_two_folders_is_one_message(tmp_path: Path, dovecot: Dovecot) -> None:
    raw = mail("Same", message_id="<same@acme.test>")
    await asyncio.to_thread(dovecot.append, raw, "INBOX")
    await asyncio.to_thread(dovecot.append, raw, "Archive")
    new, _ = await _intake(tmp_path, dovecot, folders='["INBOX", "Archive"]')
    assert new == 1
    async with open_database(tmp_path) as db:
        rows = await db.fetchall("SELECT folder, mail_id FROM mail_locations ORDER BY folder")
        assert [r[0] for r in rows] == ["Archive", "INBOX"]
        assert len({r[1] for r in rows}) == 1


async def test_uidvalidity_change_reads_again_without_duplicates(tmp_path: Path, dovecot: Dovecot) -> None:
    for n in range(2):
        await asyncio.to_thread(dovecot.append, mail(f"W{n}", message_id=f"<w{n}@acme.test>"), "Work")
    new, _ = await _intake(tmp_path, dovecot, folders='["Work"]')
    assert new == 2
    await asyncio.to_thread(dovecot.recreate, "Work")
    # The server renumbered the folder: the same two come back with new UIDs, plus one new message.
    for n in range(3):
        await asyncio.to_thread(dovecot.append, mail(f"W{n}", message_id=f"<w{n}@acme.test>"), "Work")
    async with open_database(tmp_path) as db:
        store = MailStore(db)
        before = await store.cursor("Work")
        assert await MailIntake(imap_settings(dovecot, folders='["Work"]'), store).sync_once() == 1
        assert await store.count() == 3
        after = await store.cursor("Work")
        assert before is not None and after is not None
        assert after[0] != before[0]
        assert after[1] == 3


async def test_messages_without_message_id_dedupe_on_their_bytes(tmp_path: Path, dovecot: Dovecot) -> None:
    raw = mail("No id", message_id=None)
    await asyncio.to_thread(dovecot.append, raw, "INBOX")
    await asyncio.to_thread(dovecot.append, raw, "Other")
    new, _ = await _intake(tmp_path, dovecot, folders='["INBOX", "Other"]')
    assert new == 1
