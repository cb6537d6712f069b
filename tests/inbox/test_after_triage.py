"""The opt-in action after triage (COO_IMAP__AFTER_TRIAGE), against Dovecot: ``seen`` marks triaged mail read,
``move:<folder>`` moves it; untriaged mail is left alone, and doing it again (a crash between the server's change
and our record of it) neither moves twice nor loses a message. Read-only stays the default."""

from __future__ import annotations

import asyncio
import email
from pathlib import Path

import pytest

from bot.runtime import open_runtime
from bot.settings import ConfigError, load_settings
from connectors.imap import MailIntake
from graph.inbox.triage import Triage
from memory.db import Database, open_database
from memory.mail import MailStore
from memory.records import Records
from tests.conftest import ManualClock, make_settings
from tests.fakes.dovecot import PASSWORD, Dovecot
from tests.fakes.polling import eventually
from tests.inbox.conftest import imap_settings
from tests.inbox.mails import mail

SEEN = b"\\Seen"


async def _stored_and_triaged(db: Database, intake: MailIntake) -> MailStore:
    store = MailStore(db)
    await store.setup()
    records = Records(db)
    await records.setup()
    await intake.sync_once()
    assert await intake.after_triage_once() == 0  # nothing is triaged yet: nothing is touched
    await Triage(store, records).run_pending()
    return store


def _message_ids(dovecot: Dovecot, folder: str) -> list[str]:
    with dovecot.client() as client:
        if not client.folder_exists(folder):
            return []
        client.select_folder(folder, readonly=True)
        found = client.fetch(client.search("ALL"), ["BODY.PEEK[]"])
        return sorted(str(email.message_from_bytes(v[b"BODY[]"])["Message-ID"]) for v in found.values())


async def test_seen_marks_triaged_mail_read_once(tmp_path: Path, dovecot: Dovecot) -> None:
    for n in range(2):
        await asyncio.to_thread(dovecot.append, mail(f"Offer {n}", message_id=f"<m{n}@acme.test>"))
    async with open_database(tmp_path) as db:
        store = MailStore(db)
        intake = MailIntake(imap_settings(dovecot, after_triage="seen"), store)
        await _stored_and_triaged(db, intake)
        assert all(SEEN not in f for f in (await asyncio.to_thread(dovecot.flags)).values())
        assert await intake.after_triage_once() == 2
        flags = await asyncio.to_thread(dovecot.flags)
        assert len(flags) == 2 and all(SEEN in f for f in flags.values())
        assert await intake.after_triage_once() == 0  # recorded: not done again


async def test_move_after_a_crash_between_the_move_and_its_record_moves_nothing_twice(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    for n in range(3):
        await asyncio.to_thread(dovecot.append, mail(f"Offer {n}", message_id=f"<m{n}@acme.test>"))
    async with open_database(tmp_path) as db:
        store = MailStore(db)
        intake = MailIntake(imap_settings(dovecot, after_triage="move:Archive"), store)
        await _stored_and_triaged(db, intake)
        # As if the last run moved the first message and died before recording it: the server has it moved.
        with dovecot.client() as client:
            client.create_folder("Archive")
            client.select_folder("INBOX")
            client.move([1], "Archive")
        assert await intake.after_triage_once() == 3
        assert await asyncio.to_thread(_message_ids, dovecot, "INBOX") == []
        moved = await asyncio.to_thread(_message_ids, dovecot, "Archive")
        assert moved == ["<m0@acme.test>", "<m1@acme.test>", "<m2@acme.test>"]  # each once, none lost
        assert await intake.after_triage_once() == 0
        assert await store.count() == 3 and await intake.sync_once() == 0  # intake did not read them again


async def test_in_coo_run_triaged_mail_is_marked_seen_without_waiting_for_the_poll(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    imap = {**imap_settings(dovecot, poll_s=3600).model_dump(mode="json"), "password": PASSWORD, "after_triage": "seen"}
    async with open_runtime(make_settings(tmp_path, imap=imap), console=False, clock=ManualClock()):
        await eventually(dovecot.idling, timeout=30, what="the intake in IDLE")  # mail sooner could wait the poll
        await asyncio.to_thread(dovecot.append, mail("Pricing", "Can you send prices?"))

        def seen() -> bool:
            flags = dovecot.flags()
            return bool(flags) and all(SEEN in f for f in flags.values())

        await eventually(seen, timeout=30, what="the triaged mail marked seen")


def test_after_triage_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COO_IMAP__HOST", "imap.example.org")
    assert load_settings(None).imap.after_triage == "none"
    monkeypatch.setenv("COO_IMAP__AFTER_TRIAGE", "move: Archive ")
    assert load_settings(None).imap.move_to == "Archive"
    monkeypatch.setenv("COO_IMAP__AFTER_TRIAGE", "delete")
    with pytest.raises(ConfigError, match=r"^COO_IMAP__AFTER_TRIAGE: must be none, seen or move:<folder>"):
        load_settings(None)
    monkeypatch.setenv("COO_IMAP__AFTER_TRIAGE", "move:INBOX")
    with pytest.raises(ConfigError, match=r"COO_IMAP__AFTER_TRIAGE moves mail to INBOX, a folder it reads"):
        load_settings(None)
