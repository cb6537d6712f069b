"""Today's inbox list (bot/web/inbox.py) over a real mail store: only mail triaged as needing the operator,
urgent first then newest, capped with the full count; a sender or subject that is missing or hostile is shown
as text, never dropped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.web.inbox import inbox_items
from memory.db import Database, open_database
from memory.mail import Location, MailRecord, MailStore


@pytest.fixture
async def mail(tmp_path: Path) -> AsyncIterator[tuple[MailStore, Database]]:
    async with open_database(tmp_path) as db:
        store = MailStore(db)
        await store.setup()
        yield store, db


async def received(
    store: MailStore, uid: int, sender: str = "bob@example.org", name: str = "Bob", subject: str = ""
) -> int:
    mail_id, _ = await store.store(
        MailRecord(f"<m{uid}@x>", f"h{uid}", sender, name, subject=subject), Location("INBOX", 1, uid)
    )
    return mail_id


async def test_needing_mail_is_listed_urgent_first_then_newest(mail: tuple[MailStore, Database]) -> None:
    store, db = mail
    fyi = await received(store, 1, subject="Newsletter")
    older = await received(store, 2, subject="Quote?")
    urgent = await received(store, 3, subject="Server down", name="")
    newer = await received(store, 4, subject="Invoice question")
    await store.set_triage(fyi, "newsletter", "low", "weekly news", needs_operator=False)
    await store.set_triage(older, "needs_reply", "normal", "asks for a quote", needs_operator=True)
    await store.set_triage(urgent, "suspicious", "high", "asks for a password", needs_operator=True)
    await store.set_triage(newer, "needs_reply", "normal", "", needs_operator=True)
    inbox = await inbox_items(db, "Europe/Berlin")
    assert [i.id for i in inbox.items] == [urgent, newer, older] and inbox.total == 3
    first = inbox.items[0]
    assert (first.sender, first.label, first.urgent, first.summary) == (
        "bob@example.org",
        "suspicious",
        True,
        "asks for a password",
    )
    assert inbox.items[1].sender == "Bob <bob@example.org>" and inbox.items[1].label == "needs a reply"
    stored = await store.get(urgent)
    assert stored is not None
    local = datetime.fromisoformat(stored.received_at).astimezone(ZoneInfo("Europe/Berlin"))
    assert first.received == local.strftime("%Y-%m-%d %H:%M")


async def test_the_list_is_capped_but_the_count_is_not(mail: tuple[MailStore, Database]) -> None:
    store, db = mail
    for uid in range(1, 6):
        await store.set_triage(await received(store, uid), "needs_reply", "normal", "", needs_operator=True)
    inbox = await inbox_items(db, "UTC", limit=2)
    assert len(inbox.items) == 2 and inbox.total == 5


async def test_missing_and_hostile_fields_are_shown_as_text(mail: tuple[MailStore, Database]) -> None:
    store, db = mail
    bare = await received(store, 1, sender="", name="")
    odd = await received(store, 2, subject="<script>alert(1)</script>")
    await store.set_triage(bare, "needs_reply", "normal", "", needs_operator=True)
    await store.set_triage(odd, "made-up-class", "normal", "", needs_operator=True)
    items = {i.id: i for i in (await inbox_items(db, "UTC")).items}
    assert (items[bare].sender, items[bare].subject) == ("(unknown sender)", "(no subject)")
    assert items[odd].subject == "<script>alert(1)</script>"  # escaped by the template, kept whole here
    assert items[odd].label == "not sorted yet"


async def test_nothing_needing_the_operator_is_an_empty_inbox(mail: tuple[MailStore, Database]) -> None:
    _, db = mail
    inbox = await inbox_items(db, "UTC")
    assert inbox.items == [] and inbox.total == 0
