"""Broken, odd and huge mail never stops intake (real Dovecot)."""

from __future__ import annotations

import asyncio
import logging
import os
from email.message import EmailMessage
from pathlib import Path

import pytest

from connectors.imap import MailIntake
from connectors.mail_parse import MAX_TEXT_CHARS, parse_mail
from graph.inbox.triage import Triage
from memory.db import open_database
from memory.mail import MailStore
from memory.records import Records
from tests.fakes.dovecot import Dovecot
from tests.inbox.conftest import imap_settings
from tests.inbox.mails import mail

UNPARSEABLE = b"Message-ID: <>\r\nDate: Feb 31 9999\r\n\r\n"


def _huge() -> bytes:
    msg = EmailMessage()
    msg["From"] = "ana@acme.test"
    msg["To"] = "me@solo.test"
    msg["Subject"] = "The video"
    msg["Message-ID"] = "<huge@acme.test>"
    msg.set_content("Here it is.")
    msg.add_attachment(os.urandom(20 * 1024 * 1024), maintype="video", subtype="mp4", filename="demo.mp4")
    return msg.as_bytes()


CASES = {
    "bad-charset": (
        b"From: bob@x.test\r\nSubject: =?x-unknown?q?hi?=\r\nMessage-ID: <cs@x.test>\r\n"
        b"Content-Type: text/plain; charset=x-unknown-zz\r\n\r\ncaf\xe9 \xff\xfe ok\r\n"
    ),
    "broken-mime": (
        b'From: bob@x.test\r\nMessage-ID: <bm@x.test>\r\nContent-Type: multipart/mixed; boundary="zz"\r\n\r\n'
        b"--zz\r\nContent-Type: text/plain\r\n\r\nfirst part, never closed\r\n--z"
    ),
    "html-only": (
        b"From: news@shop.test\r\nMessage-ID: <h@x.test>\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><style>p{}</style><body><p>Big <b>sale</b></p><script>x()</script></body></html>\r\n"
    ),
    "long-text": mail("Long", "word " * 50_000, message_id="<long@x.test>"),
    "unparseable": UNPARSEABLE,
}


async def test_malformed_and_huge_mail_is_stored_and_intake_goes_on(
    tmp_path: Path, dovecot: Dovecot, caplog: pytest.LogCaptureFixture
) -> None:
    raws = [*CASES.values(), _huge(), mail("After all that", message_id="<last@acme.test>")]
    await asyncio.to_thread(dovecot.append_many, raws)
    async with open_database(tmp_path) as db:
        store = MailStore(db)
        await store.setup()
        records = Records(db)
        await records.setup()
        with caplog.at_level(logging.WARNING):
            assert await MailIntake(imap_settings(dovecot), store).sync_once() == len(raws)
            assert await MailIntake(imap_settings(dovecot), store).sync_once() == 0
        assert sum("could not be parsed" in r.getMessage() for r in caplog.records) == 1
        huge = await store.by_message_id("<huge@acme.test>")
        assert huge is not None
        assert huge.record.body.strip() == "Here it is."
        assert huge.record.attachments == (("demo.mp4", "video/mp4", 20 * 1024 * 1024),)
        charset = await store.by_message_id("<cs@x.test>")
        assert charset is not None and "ok" in charset.record.body
        broken = await store.by_message_id("<bm@x.test>")
        assert broken is not None and "first part" in broken.record.body
        html = await store.by_message_id("<h@x.test>")
        assert html is not None and html.record.body.split() == ["Big", "sale"]
        long = await store.by_message_id("<long@x.test>")
        assert long is not None and len(long.record.body) == MAX_TEXT_CHARS
        assert await store.by_message_id("<last@acme.test>") is not None
        # The unreadable one is kept raw and shown once to the operator, never triaged by a model.
        await Triage(store, records).run_pending()
        listed = await store.needing_operator()
        unread = [m for m in listed if not m.record.parsed]
        assert len(unread) == 1 and unread[0].record.raw == UNPARSEABLE
        assert unread[0].summary == "A message that could not be read; kept as it came"


def test_a_parse_failure_keeps_the_raw_bytes_and_their_hash() -> None:
    record = parse_mail(UNPARSEABLE)
    assert not record.parsed and record.raw == UNPARSEABLE
    assert record.message_id.startswith("<sha256-") and record.sha256 in record.message_id
