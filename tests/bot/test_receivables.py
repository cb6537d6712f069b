"""Receivables end to end in one process: the real runtime (dispatcher, approvals, outbox), the real
``stripe`` SDK against the fake Stripe API, a real SMTP server, real SQLite. The due check runs on an
injected clock; Stripe's events are polled by the real poller. A customer who has paid is never sent a
reminder (I8): the invoice is read from Stripe right before a reminder goes out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from bot.messages import OutboundMessage
from bot.receivables import LAST_CHECK, ReceivablesLoop
from bot.running import Runtime
from bot.runtime import open_runtime
from connectors.amounts import decimals
from connectors.stripe_events import StripeEventPoller
from connectors.stripe_settings import StripeSettings
from graph.receivables.service import Receivables
from graph.receivables.settings import ReceivablesSettings
from memory.records import Invoice, Records
from memory.stripe_events import StripeEventStore
from tests.bot.test_invoice_flow import button, card, edited, inbound, press
from tests.conftest import DateClock, RecordingChannel, make_settings
from tests.fakes.polling import eventually, eventually_async
from tests.fakes.smtp_server import SMTPServer, free_port
from tests.fakes.stripe_api import FakeStripe


@dataclass
class Setup:
    rt: Runtime
    chan: RecordingChannel
    fake: FakeStripe
    smtp: SMTPServer
    loop: ReceivablesLoop
    clock: DateClock
    invoice: Invoice
    poller: StripeEventPoller

    def reminders(self) -> list[OutboundMessage]:
        """Reminder cards shown (not edits)."""
        return [m for m in self.chan.sent if m.edit_message_id is None and "\nOnly if: " in m.text]

    async def on(self, day: date) -> None:
        self.clock.on(day)
        await self.loop.check()

    async def stripe_news(self) -> None:
        await self.loop.poll()
        await self.loop.settle()


@dataclass
class StripeRuntime:
    """The runtime with Stripe and SMTP at fakes, past its first due check, answering on a recording channel."""

    rt: Runtime
    chan: RecordingChannel
    fake: FakeStripe
    smtp: SMTPServer
    stripe: StripeSettings


@asynccontextmanager
async def stripe_runtime(tmp_path: Path) -> AsyncIterator[StripeRuntime]:
    """The runtime as the receivables tests need it: Stripe and SMTP at fakes, follow-ups checked daily."""
    with SMTPServer() as smtp:
        async with FakeStripe() as fake:
            stripe = {"api_key": fake.api_key, "api_base_url": fake.api_base_url, "timeout_s": 5}
            settings = make_settings(
                tmp_path,
                stripe=stripe,
                smtp=smtp.settings(),
                outbox={"backoff_base_s": 0.02, "poll_s": 0.05},
                followups={"check_s": 86400},
            )
            async with open_runtime(settings, console=False) as rt:
                # the runtime's own loop makes its first check at start; then not for a day
                await eventually_async(lambda: rt.control.get(LAST_CHECK), what="the runtime's first due check")
                chan = RecordingChannel("rec")
                rt.dispatcher.attach(chan)
                assert settings.stripe is not None
                yield StripeRuntime(rt, chan, fake, smtp, settings.stripe)


@asynccontextmanager
async def receivables(tmp_path: Path) -> AsyncIterator[Setup]:
    """A sent invoice (Ana Silva, 1,200.00 USD) and a receivables loop on an injected clock."""
    async with stripe_runtime(tmp_path) as s:
        rt, chan = s.rt, s.chan
        await Records(rt.db).upsert("contact", {"name": "Ana Silva", "emails": ["ana@example.org"]}, "op")
        await rt.dispatcher.handle(inbound("/invoice Ana Silva 1200 | Website redesign", kind="command"))
        await press(rt, button(card(chan), "Approve"))
        await eventually(lambda: edited(chan, "Sent at") is not None, what="the invoice sent")
        record = await Records(rt.db).find_one("invoice", "stripe_id", s.fake.sent[0])
        assert record is not None and isinstance(record.data, Invoice)
        store = StripeEventStore(rt.db)
        poller = StripeEventPoller(s.stripe, store)
        clock = DateClock(record.at)
        service = Receivables(rt.approvals, Records(rt.db), ReceivablesSettings(), "UTC", decimals, clock)
        loop = ReceivablesLoop(service, store, poller, rt.approval_ui, rt.control, rt.messenger, (3600, 86400))
        try:
            yield Setup(rt, chan, s.fake, s.smtp, loop, clock, record.data, poller)
        finally:
            await poller.close()


async def test_reminders_come_on_the_cadence_once_each_and_a_sleeping_machine_proposes_once(tmp_path: Path) -> None:
    async with receivables(tmp_path) as s:
        due = s.invoice.due
        assert due is not None
        await s.on(due - timedelta(days=4))
        assert s.reminders() == []
        await s.on(due - timedelta(days=3))
        await s.on(due - timedelta(days=3))  # the next check the same day
        first = s.reminders()
        # asleep from due-3 to due+8: offsets 0, 3 and 7 passed; one reminder on waking, the latest
        await s.on(due + timedelta(days=8))
        await s.on(due + timedelta(days=8))
        shown = s.reminders()
        # a restart: a new service finds what the last one proposed (the id is the invoice and the offset)
        again = Receivables(s.rt.approvals, Records(s.rt.db), ReceivablesSettings(), "UTC", decimals, s.clock)
        assert (await again.check_due()).show == []
        approvals = [a for a in await s.rt.approvals.store.list_approvals() if a.kind == "email.send"]
    assert len(first) == 1
    url, number = s.invoice.url, s.invoice.number
    assert (
        "To: ana@example.org" in first[0].text
        and f"Subject: Reminder: invoice {number} is due on {due}" in first[0].text
    )
    assert f"invoice {number} for 1,200.00 USD is due on {due}" in first[0].text and url in first[0].text
    assert "Only if: the invoice is still unpaid at Stripe" in first[0].text
    assert [b.label for b in first[0].buttons] == ["Approve", "Edit", "Reject"]
    assert len(shown) == 2
    assert f"Subject: Overdue: invoice {number}, 8 days past due" in shown[1].text  # firmer as it ages
    assert sorted(a.state for a in approvals) == ["pending", "rejected"]
    replaced = edited(s.chan, "Replaced by the next reminder")
    assert replaced is not None and "Nothing was sent" in replaced.text
    assert s.smtp.delivered == []


async def test_a_paid_invoice_gets_no_reminder(tmp_path: Path) -> None:
    async with receivables(tmp_path) as s:
        s.fake.pay(s.fake.sent[0])
        await s.stripe_news()
        told = [m.text for m in s.chan.sent if m.text.endswith("1,200.00 USD") and " paid " in m.text]
        due = s.invoice.due
        assert due is not None
        for offset in (-3, 0, 3, 7, 14):
            await s.on(due + timedelta(days=offset))
        record = await Records(s.rt.db).find_one("invoice", "stripe_id", s.fake.sent[0])
    assert told == [f"Ana Silva paid {s.invoice.number}: 1,200.00 USD"]
    assert record is not None and isinstance(record.data, Invoice) and record.data.status == "paid"
    assert s.reminders() == [] and s.smtp.delivered == []


async def test_a_payment_while_a_reminder_is_pending_withdraws_its_card(tmp_path: Path) -> None:
    async with receivables(tmp_path) as s:
        assert s.invoice.due is not None
        await s.on(s.invoice.due)
        (reminder,) = s.reminders()
        s.fake.pay(s.fake.sent[0])
        await s.stripe_news()
        await s.stripe_news()  # the same events again: nothing more happens
        await press(s.rt, button(reminder, "Approve"))  # too late: it was withdrawn
        await asyncio.sleep(0.3)
        approvals = [a for a in await s.rt.approvals.store.list_approvals() if a.kind == "email.send"]
        outbox = await s.rt.approvals.store.outbox(approvals[0].id)
    withdrawn = edited(s.chan, "Withdrawn: ")
    assert withdrawn is not None
    paid = f"Withdrawn: Ana Silva paid {s.invoice.number}: 1,200.00 USD. Nothing was sent."
    assert withdrawn.text.startswith(paid)
    assert withdrawn.buttons == ()
    assert [a.state for a in approvals] == ["rejected"] and outbox is None
    assert s.chan.sent[-1].text.startswith("Already decided: rejected")
    assert len([m for m in s.chan.sent if " paid " in m.text and m.edit_message_id is None]) == 1  # told once
    assert s.smtp.delivered == []


async def test_a_payment_between_approve_and_execute_sends_nothing_and_the_card_says_why(tmp_path: Path) -> None:
    async with receivables(tmp_path) as s:
        assert s.invoice.due is not None
        await s.on(s.invoice.due + timedelta(days=3))
        (reminder,) = s.reminders()
        s.fake.pay(s.fake.sent[0])  # paid at Stripe; the event is not polled yet
        await press(s.rt, button(reminder, "Approve"))
        await eventually(lambda: edited(s.chan, "Failed: ") is not None, what="the card's outcome")
        reads = s.fake.calls("invoices.retrieve")
    shown = edited(s.chan, "Failed: ")
    assert shown is not None
    assert shown.text.startswith(
        f"Failed: not sent: invoice {s.invoice.number} is already paid at Stripe. Nothing was sent."
    )
    assert reads and reads[-1].path.endswith(s.fake.sent[0])  # read right before the send
    assert s.smtp.delivered == []


async def test_an_approved_reminder_for_an_unpaid_invoice_is_sent_once(tmp_path: Path) -> None:
    async with receivables(tmp_path) as s:
        assert s.invoice.due is not None
        await s.on(s.invoice.due + timedelta(days=3))
        (reminder,) = s.reminders()
        await press(s.rt, button(reminder, "Approve"))
        (sent,) = await s.smtp.wait_delivered(1)
        await eventually(lambda: edited(s.chan, "Sent at") is not None, what="the card shows it sent")
        await s.on(s.invoice.due + timedelta(days=3))
    assert sent.rcpt_tos == ["ana@example.org"]
    assert sent.message["Subject"] == f"Invoice {s.invoice.number} is 3 days overdue"
    assert f"Invoice {s.invoice.number} for 1,200.00 USD was due on {s.invoice.due}" in sent.body
    assert s.invoice.url in sent.body
    assert len(s.smtp.delivered) == 1 and len(s.reminders()) == 1


async def test_stripe_unreachable_at_send_time_sends_nothing_blind(tmp_path: Path) -> None:
    async with receivables(tmp_path) as s:
        assert s.invoice.due is not None
        await s.on(s.invoice.due)
        (reminder,) = s.reminders()
        s.fake.fail_next("invoices.retrieve", 503, times=100)
        await press(s.rt, button(reminder, "Approve"))
        await eventually(lambda: edited(s.chan, "Failed: ") is not None, timeout=20, what="the retries end")
    shown = edited(s.chan, "Failed: ")
    assert shown is not None and "gave up after" in shown.text
    assert s.smtp.delivered == []


async def test_the_digest_shows_aging_payments_and_the_reminders_waiting(tmp_path: Path) -> None:
    async with receivables(tmp_path) as s:
        assert s.invoice.due is not None
        await s.on(s.invoice.due - timedelta(days=3))
        await s.rt.dispatcher.handle(inbound("/digest", kind="command"))
        before = next(m.text for m in reversed(s.chan.sent) if m.text.startswith("Digest for"))
        s.fake.pay(s.fake.sent[0])
        await s.stripe_news()
        await s.rt.dispatcher.handle(inbound("/digest", kind="command"))
        after = next(m.text for m in reversed(s.chan.sent) if m.text.startswith("Digest for"))
    aging = "Receivables (open invoices by days overdue):\n- current: 1,200.00 USD (1 invoice)\n- total: 1,200.00 USD"
    assert aging in before and "Payment reminders waiting for your approval: 1" in before
    assert f"Paid since the last digest:\n- invoice {s.invoice.number} (Ana Silva): 1,200.00 USD" in after
    assert "Receivables (" not in after and "Payment reminders waiting" not in after


async def test_webhook_mode_in_the_runtime_tells_the_operator_once_per_event(tmp_path: Path) -> None:
    secret = "whsec_runtime_test"
    port = free_port()
    async with FakeStripe() as fake:
        stripe = {
            "api_key": fake.api_key,
            "api_base_url": fake.api_base_url,
            "webhook_secret": secret,
            "webhook_listen": f"127.0.0.1:{port}",
            "events_poll_s": 3600,
        }
        settings = make_settings(tmp_path, stripe=stripe, followups={"check_s": 86400})
        async with open_runtime(settings, console=False) as rt:
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            await rt.dispatcher.handle(inbound("/help", kind="command"))  # the operator's own chat is known
            paid = {"id": "in_dash", "object": "invoice", "number": "INV-0003", "currency": "usd"}
            event = fake.record_event("invoice.paid", {**paid, "amount_paid": 120000, "customer_name": "Acme"})
            url = f"http://127.0.0.1:{port}/stripe/webhook"
            assert await fake.deliver(url, event, "whsec_forged") == 400
            assert await fake.deliver(url, event, secret) == 200
            assert await fake.deliver(url, event, secret) == 200  # a retried delivery
            await eventually(lambda: any(m.text == "Acme paid INV-0003: 1,200.00 USD" for m in chan.sent))
            await asyncio.sleep(0.3)
            stored = await StripeEventStore(rt.db).count()
    assert [m.text for m in chan.sent].count("Acme paid INV-0003: 1,200.00 USD") == 1
    assert stored == 1 and fake.calls("events.list") == []  # nothing polled: the webhook brought it
