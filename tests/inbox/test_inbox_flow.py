"""The inbox inside the runtime: intake from Dovecot, triage, /inbox, and a threaded reply card."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from bot.runtime import open_runtime
from memory.mail import MailStore
from tests.bot.test_approval_flow import card, data, inbound
from tests.conftest import ManualClock, RecordingChannel, make_settings
from tests.fakes.dovecot import Dovecot
from tests.fakes.polling import eventually_async
from tests.fakes.smtp_server import SMTPServer
from tests.inbox.conftest import imap_settings
from tests.inbox.mails import mail


async def test_mail_is_listed_and_answered_by_a_threaded_card(tmp_path: Path, dovecot: Dovecot) -> None:
    imap = imap_settings(dovecot).model_dump(mode="json")
    imap["password"] = imap_settings(dovecot).password.get_secret_value()  # type: ignore[union-attr]
    with SMTPServer() as smtp:
        settings = make_settings(tmp_path, smtp=smtp.settings(), imap=imap, outbox={"poll_s": 0.05})
        async with open_runtime(settings, console=False, clock=ManualClock()) as rt:
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            store = MailStore(rt.db)
            await rt.dispatcher.handle(inbound("/inbox", kind="command"))
            assert chan.sent[-1].text == "Inbox: nothing needs you."
            await rt.dispatcher.handle(inbound("/inbox what", kind="command"))
            assert chan.sent[-1].text.startswith("Usage: /inbox")
            raw = mail("Pricing for 2027", "Can you send the new prices?", Reply_To="sales@acme.test")
            await asyncio.to_thread(dovecot.append, raw)
            await eventually_async(lambda: store.count_needing_operator(), timeout=20, what="the mail triaged")
            await rt.dispatcher.handle(inbound("/inbox", kind="command"))
            listing = chan.sent[-1].text
            digest = await rt.digest.build(datetime(2026, 1, 1, tzinfo=UTC), reconcile=False)
            assert "Inbox: 1 need you (/inbox)" in digest.text
            assert "#1 Ana Lima <ana@acme.test>: Pricing for 2027 [needs a reply]" in listing
            await rt.dispatcher.handle(inbound("/inbox 1", kind="command"))
            assert "(Reply-To: sales@acme.test)" in chan.sent[-1].text
            assert "Can you send the new prices?" in chan.sent[-1].text

            await rt.dispatcher.handle(inbound("/inbox reply 1", kind="command"))  # no model: no draft
            assert chan.sent[-1].text.startswith("Usage: /inbox")
            await rt.dispatcher.handle(inbound("/inbox 99", kind="command"))
            assert chan.sent[-1].text.startswith("No such message.")
            await rt.dispatcher.handle(inbound("/inbox reply 1 | Hi Ana, prices attached soon.", kind="command"))
            shown = card(chan)
            assert "To: ana@acme.test\nSubject: Re: Pricing for 2027\nIn reply to: <m1@acme.test>" in shown.text
            assert "sales@acme.test" in chan.sent[-1].text  # the note that Reply-To differs
            assert smtp.delivered == []
            await rt.dispatcher.handle(inbound(kind="callback", data=data(shown, "Approve")))
            sent = (await smtp.wait_delivered(1))[0]
            assert sent.rcpt_tos == ["ana@acme.test"]
            assert sent.message["In-Reply-To"] == "<m1@acme.test>"
            assert sent.message["References"] == "<m1@acme.test>"
            ours = sent.message["Message-ID"]
            assert (await store.sent_for([ours])) is not None

            # Ana answers our reply: it joins the thread and is marked as waiting on us.
            answer = mail(
                "Re: Pricing for 2027",
                "Thanks!",
                message_id="<m2@acme.test>",
                In_Reply_To=ours,
                References=f"<m1@acme.test> {ours}",
            )
            await asyncio.to_thread(dovecot.append, answer)

            async def triaged() -> bool:
                found = await store.by_message_id("<m2@acme.test>")
                return found is not None and found.mail_class is not None

            await eventually_async(triaged, timeout=20, what="the answer triaged")
            second = await store.by_message_id("<m2@acme.test>")
            first = await store.by_message_id("<m1@acme.test>")
            assert second is not None and first is not None
            assert second.mail_class == "waiting_on_us"
            assert second.thread == first.thread
            await rt.dispatcher.handle(inbound(f"/inbox {second.id}", kind="command"))
            assert "Earlier in this thread:\n  #1 Ana Lima <ana@acme.test>: Pricing for 2027" in chan.sent[-1].text
            approval_id = shown.buttons[0].data  # the card that sent our reply is named
            linked = await store.sent_for([ours])
            assert linked is not None and linked.approval_id is not None and linked.approval_id in approval_id
            assert f'Answers our email "Re: Pricing for 2027" to ana@acme.test (card {linked.approval_id})' in (
                chan.sent[-1].text
            )


async def test_inbox_without_imap_says_how_to_turn_it_on(tmp_path: Path) -> None:
    async with open_runtime(make_settings(tmp_path), console=False, clock=ManualClock()) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(inbound("/inbox", kind="command"))
        assert "COO_IMAP__HOST" in chan.sent[-1].text
