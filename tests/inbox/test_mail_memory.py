"""Received mail in the event log and semantic memory: /recall finds it, /forget removes it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.runtime import open_runtime
from memory.mail import MailStore
from tests.bot.test_approval_flow import inbound
from tests.conftest import ManualClock, RecordingChannel, make_settings
from tests.fakes.dovecot import PASSWORD, Dovecot
from tests.fakes.polling import eventually_async
from tests.inbox.conftest import imap_settings
from tests.inbox.mails import mail


async def test_recall_finds_mail_and_forget_removes_it(tmp_path: Path, dovecot: Dovecot) -> None:
    imap = {**imap_settings(dovecot).model_dump(mode="json"), "password": PASSWORD}
    settings = make_settings(tmp_path, imap=imap, memory={"semantic": True, "ingest_interval_s": 0.05})
    async with open_runtime(settings, console=False, clock=ManualClock()) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        body = "Our pricing for the enterprise plan goes up to 4,000 EUR a year from January."
        await asyncio.to_thread(dovecot.append, mail("Acme pricing update", body, sender="Ana <ana@acme.test>"))

        async def logged() -> bool:
            return bool(await rt.db.events(kind="mail.received"))

        await eventually_async(logged, timeout=30, what="the mail in the event log")
        event = (await rt.db.events(kind="mail.received"))[0]
        assert event.payload == {
            "mail_id": 1,
            "from": "ana@acme.test",
            "date": "2026-12-01T09:30:00+00:00",
            "subject": "Acme pricing update",
            "class": "needs_reply",
        }
        await rt.dispatcher.handle(inbound("/recall what did Acme say about pricing", kind="command"))
        found = chan.sent[-1].text
        assert found.startswith("mail-1 ") and "Email from Ana <ana@acme.test> on 2026-12-01" in found
        await rt.dispatcher.handle(inbound("/forget mail-1", kind="command"))
        assert chan.sent[-1].text == "Forgotten: mail-1."
        await rt.dispatcher.handle(inbound("/recall what did Acme say about pricing", kind="command"))
        assert "mail-1" not in chan.sent[-1].text
        forgotten = await MailStore(rt.db).get(1)
        assert forgotten is not None and forgotten.record.from_addr == "ana@acme.test"
        assert (forgotten.record.body, forgotten.record.subject, forgotten.summary) == ("", "", "")
        assert forgotten.record.raw is None and forgotten.record.headers == {}
        rows = await rt.db.fetchall("SELECT * FROM mail_messages")
        assert rows and not any("4,000 EUR" in str(v) or "Acme pricing" in str(v) for row in rows for v in row)
        await rt.dispatcher.handle(inbound("/inbox 1", kind="command"))
        assert "4,000 EUR" not in chan.sent[-1].text
