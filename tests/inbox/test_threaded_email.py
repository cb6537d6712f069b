"""email.send threading: In-Reply-To/References on the wire, its Message-ID stored before DATA, and the
digest of an unthreaded email unchanged (cards approved before threading existed still verify)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors.base import AmbiguousOutcome
from connectors.email import EmailAction, EmailConnector
from connectors.settings import SMTPSettings
from memory.approvals import ApprovalStore
from memory.db import connect_sqlite, open_database
from memory.mail import MailStore
from tests.fakes.smtp_server import SMTPServer

BASE = {"from_addr": "me@example.org", "to": ("ana@example.org",), "subject": "Proposal", "body": "Hi Ana"}


def test_an_unthreaded_email_hashes_as_before() -> None:
    legacy = {"kind": "email.send", "cc": [], **BASE, "to": ["ana@example.org"]}
    canonical = json.dumps(legacy, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert EmailAction.model_validate(BASE).digest() == hashlib.sha256(canonical.encode()).hexdigest()


def test_threading_is_part_of_the_digest_and_must_be_message_ids() -> None:
    plain = EmailAction.model_validate(BASE)
    reply = EmailAction.model_validate({**BASE, "in_reply_to": "<m1@acme.test>", "references": ["<m1@acme.test>"]})
    other = EmailAction.model_validate({**BASE, "in_reply_to": "<m2@acme.test>", "references": ["<m2@acme.test>"]})
    assert len({plain.digest(), reply.digest(), other.digest()}) == 3
    with pytest.raises(ValidationError, match="is not a Message-ID"):
        EmailAction.model_validate({**BASE, "in_reply_to": "<a@b>\r\nBcc: x@evil.test"})


async def test_a_reply_is_threaded_and_its_message_id_kept_even_when_the_outcome_is_unknown(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        store = MailStore(db)
        await store.setup()
        conn = await connect_sqlite(tmp_path / "coo.sqlite", 5000)
        await ApprovalStore(conn).setup()  # a reply is linked to its card through the outbox
        await conn.close()
        reply = EmailAction.model_validate(
            {**BASE, "in_reply_to": "<m2@acme.test>", "references": ["<m1@acme.test>", "<m2@acme.test>"]}
        )
        with SMTPServer() as smtp:
            connector = EmailConnector(SMTPSettings.model_validate(smtp.settings()), on_sent=store.record_sent)
            done = await connector.execute(reply, "coo-r1")
        got = smtp.delivered[0].message
        assert got["In-Reply-To"] == "<m2@acme.test>"
        assert got["References"] == "<m1@acme.test> <m2@acme.test>"
        sent = await store.sent_for([done.external_id])
        assert sent is not None and sent.idempotency_key == "coo-r1" and sent.recipients == ("ana@example.org",)
        assert sent.approval_id is None  # sent outside the outbox: no card to name
        with SMTPServer(default_mode="drop_after_data") as smtp:
            connector = EmailConnector(SMTPSettings.model_validate(smtp.settings()), on_sent=store.record_sent)
            with pytest.raises(AmbiguousOutcome):
                await connector.execute(reply, "coo-r2")
        assert await store.sent_for(["<coo-r2@example.org>"]) is not None
