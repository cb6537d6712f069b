"""Same-day reminders as one message with "Approve all N", the operator's reminder wording from /profile, and a
payment moving its payer to customer in the pipeline: the real runtime (dispatcher, approvals, outbox), the real
``stripe`` SDK against the fake Stripe, a real SMTP server, real SQLite; due checks on an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from bot.approve_all import ApproveAll
from bot.messages import OutboundMessage
from bot.receivables import ReceivablesLoop
from bot.runtime import Runtime
from connectors.amounts import decimals
from connectors.stripe_events import StripeEventPoller
from graph.receivables.service import Receivables
from graph.receivables.settings import ReceivablesSettings
from memory.pipeline import PipelineStore
from memory.profile import ProfileStore
from memory.records import Invoice, Records
from memory.stripe_events import StripeEventStore
from tests.bot.test_invoice_flow import OPERATOR, button, card, edited, inbound, press
from tests.bot.test_receivables import stripe_runtime
from tests.conftest import DateClock, RecordingChannel
from tests.fakes.polling import eventually
from tests.fakes.smtp_server import SMTPServer
from tests.fakes.stripe_api import FakeStripe

PEOPLE = (
    ("Ana Silva", "ana@example.org", 1200),
    ("Ben Okafor", "ben@example.org", 300),
    ("Cleo Park", "cleo@example.org", 75),
)


@dataclass
class Many:
    rt: Runtime
    chan: RecordingChannel
    fake: FakeStripe
    smtp: SMTPServer
    loop: ReceivablesLoop
    clock: DateClock
    invoices: list[Invoice]
    contacts: list[str]

    def reminders(self) -> list[OutboundMessage]:
        return [m for m in self.chan.sent if m.edit_message_id is None and "\nOnly if: " in m.text]

    def sent_reminders(self) -> int:
        return len([m for m in self.chan.sent if m.text.startswith("Sent at") and "\nOnly if: " in m.text])

    def group(self) -> OutboundMessage:
        return next(m for m in self.chan.sent if m.edit_message_id is None and m.text.startswith("3 payment reminders"))

    async def on(self, day: date) -> None:
        self.clock.on(day)
        await self.loop.check()

    async def stripe_news(self) -> None:
        await self.loop.poll()
        await self.loop.settle()


@asynccontextmanager
async def many_invoices(tmp_path: Path, wired: bool = True) -> AsyncIterator[Many]:
    """Three sent invoices, due the same day, and a receivables loop on an injected clock (``wired``: with
    Approve all, the profile's wording and the pipeline, as ``coo run`` has them)."""
    async with stripe_runtime(tmp_path) as s:
        rt, chan, fake = s.rt, s.chan, s.fake
        records = Records(rt.db)
        contacts = []
        for number, (name, email, amount) in enumerate(PEOPLE, 1):
            contacts.append((await records.upsert("contact", {"name": name, "emails": [email]}, "op")).id)
            await rt.dispatcher.handle(inbound(f"/invoice {name} {amount} | Work", kind="command"))
            await press(rt, button(card(chan), "Approve"))
            await eventually(lambda n=number: sent_cards(chan) == n, what="the invoice sent")  # type: ignore[misc]
        invoices = []
        for stripe_id in fake.sent:
            record = await records.find_one("invoice", "stripe_id", stripe_id)
            assert record is not None and isinstance(record.data, Invoice)
            invoices.append(record.data)
        store = StripeEventStore(rt.db)
        poller = StripeEventPoller(s.stripe, store)
        clock = DateClock(record.at)
        extra = {"profile": ProfileStore(rt.db)} if wired else {}
        service = Receivables(rt.approvals, records, ReceivablesSettings(), "UTC", decimals, clock, **extra)
        grouped = ApproveAll(rt.approval_ui, rt.control, rt.messenger.send) if wired else None
        loop = ReceivablesLoop(
            service, store, poller, rt.approval_ui, rt.control, rt.messenger, (3600, 86400), approve_all=grouped
        )
        try:
            yield Many(rt, chan, fake, s.smtp, loop, clock, invoices, contacts)
        finally:
            await poller.close()


def sent_cards(chan: RecordingChannel) -> int:
    return len([m for m in chan.sent if m.edit_message_id is not None and m.text.startswith("Sent at")])


def due_day(s: Many) -> date:
    due = {i.due for i in s.invoices}
    assert len(due) == 1  # the three are due the same day
    day = due.pop()
    assert day is not None
    return day


async def test_approve_all_sends_each_reminder_once_and_a_second_press_sends_nothing_more(tmp_path: Path) -> None:
    async with many_invoices(tmp_path) as s:
        await s.on(due_day(s) + timedelta(days=3))
        group = s.group()
        cards = s.reminders()
        await press(s.rt, button(group, "Approve all 3"))
        delivered = await s.smtp.wait_delivered(3)
        await eventually(lambda: s.sent_reminders() == 3, what="3 outcomes")
        await press(s.rt, button(group, "Approve all 3"))  # pressed twice
        await asyncio.sleep(0.3)
        approvals = [a for a in await s.rt.approvals.store.list_approvals() if a.kind == "email.send"]
        events = await s.rt.db.events(limit=100_000)
    assert len(cards) == 3 and [b.label for b in group.buttons] == ["Approve all 3"]
    for invoice in s.invoices:
        assert invoice.number in group.text  # the list names each reminder
    assert sorted(r for d in delivered for r in d.rcpt_tos) == [
        "ana@example.org",
        "ben@example.org",
        "cleo@example.org",
    ]
    assert len(s.smtp.delivered) == 3
    assert sorted(a.state for a in approvals) == ["approved"] * 3
    ids = {a.id for a in approvals}
    decided = [e for e in events if e.kind == "approval.decided" and e.payload.get("approval_id") in ids]
    assert len(decided) == 3  # each card approved once, on its own digest
    assert {e.payload["digest"] for e in decided} == {a.digest for a in approvals}
    result = edited(s.chan, "3 payment reminders")
    assert result is not None and "Approved 3 of 3 by " in result.text and result.buttons == ()
    assert s.chan.sent[-1].text.startswith("Nothing was approved: every card was decided meanwhile.")


async def test_a_reminder_paid_meanwhile_is_skipped_and_the_message_says_why(tmp_path: Path) -> None:
    async with many_invoices(tmp_path) as s:
        await s.on(due_day(s) + timedelta(days=3))
        group = s.group()
        s.fake.pay(s.fake.sent[1])  # Ben paid; the event withdraws his reminder
        await s.stripe_news()
        await press(s.rt, button(group, "Approve all 3"))
        delivered = await s.smtp.wait_delivered(2)
        await eventually(lambda: s.sent_reminders() == 2, what="2 outcomes")
        await asyncio.sleep(0.3)
    assert sorted(r for d in delivered for r in d.rcpt_tos) == ["ana@example.org", "cleo@example.org"]
    assert len(s.smtp.delivered) == 2
    result = edited(s.chan, "3 payment reminders")
    assert result is not None
    ben = s.invoices[1].number
    assert "Approved 2 of 3 by " in result.text
    assert "Skipped " in result.text and ben in result.text.split("Approved 2 of 3", 1)[1]
    assert "withdrawn, the invoice was settled at Stripe." in result.text


async def test_a_reminder_edited_meanwhile_is_skipped_and_its_correction_waits(tmp_path: Path) -> None:
    async with many_invoices(tmp_path) as s:
        await s.on(due_day(s) + timedelta(days=3))
        group = s.group()
        cleo = next(m for m in s.reminders() if "To: cleo@example.org" in m.text)
        await press(s.rt, button(cleo, "Edit"))
        await s.rt.dispatcher.handle(inbound("subject=A gentle nudge"))
        await press(s.rt, button(group, "Approve all 3"))
        await s.smtp.wait_delivered(2)
        await asyncio.sleep(0.5)
        pending = await s.rt.approvals.store.list_approvals("pending")
    assert sorted(r for d in s.smtp.delivered for r in d.rcpt_tos) == ["ana@example.org", "ben@example.org"]
    result = edited(s.chan, "3 payment reminders")
    assert result is not None and "Approved 2 of 3 by " in result.text
    assert "the card changed since this list was made" in result.text
    assert [p.action["subject"] for p in pending] == ["A gentle nudge"]  # the correction waits for its own tap


async def test_without_approve_all_each_reminder_is_its_own_card(tmp_path: Path) -> None:
    async with many_invoices(tmp_path, wired=False) as s:
        await s.on(due_day(s) + timedelta(days=3))
    assert len(s.reminders()) == 3
    assert not any(m.text.startswith("3 payment reminders") for m in s.chan.sent)


async def test_a_forged_or_foreign_approve_all_press_approves_nothing(tmp_path: Path) -> None:
    async with many_invoices(tmp_path) as s:
        await s.on(due_day(s) + timedelta(days=3))
        data = button(s.group(), "Approve all 3")
        prefix, gid, nonce = data.split(":")
        await press(s.rt, f"{prefix}:{gid}:{'x' * len(nonce)}")
        await press(s.rt, f"{prefix}:nosuchgroup:{nonce}")
        await asyncio.sleep(0.3)
        pending = await s.rt.approvals.store.list_approvals("pending")
    assert len(pending) == 3 and s.smtp.delivered == []


async def test_the_profiles_wording_opens_each_reminder_and_the_tone_still_firms_up(tmp_path: Path) -> None:
    async with many_invoices(tmp_path) as s:
        wording = "Hello {customer}, Nova Studio here about {number} ({amount}). {unknown} stays as written."
        await s.rt.dispatcher.handle(inbound(f"/profile set reminders {wording}", kind="command"))
        due = due_day(s)
        await s.on(due - timedelta(days=3))
        early = [m.text for m in s.reminders()]
        await s.on(due + timedelta(days=8))
        late = [m.text for m in s.reminders()][3:]
    ana = s.invoices[0]
    opening = f"Hello Ana Silva, Nova Studio here about {ana.number} (1,200.00 USD). {{unknown}} stays as written."
    first = next(t for t in early if "ana@example.org" in t)
    assert opening in first and "Hi Ana Silva" not in first
    assert f"Subject: Reminder: invoice {ana.number} is due on {due}" in first
    firm = next(t for t in late if "ana@example.org" in t)
    assert opening in firm and f"Subject: Overdue: invoice {ana.number}, 8 days past due" in firm
    assert "Please pay it this week" in firm  # the firm tone after a week, with the operator's opening


async def test_a_payment_moves_its_payer_to_customer_in_the_runtimes_pipeline(tmp_path: Path) -> None:
    async with many_invoices(tmp_path) as s:
        await s.rt.dispatcher.handle(inbound("/pipeline Ana proposal", kind="command"))
        s.fake.pay(s.fake.sent[0])
        assert s.rt.receivables is not None
        await s.rt.receivables.poll()  # the runtime's own loop: wired as in coo run
        await s.rt.receivables.settle()
        await s.rt.receivables.poll()
        await s.rt.receivables.settle()  # the same events again: no second move
        history = await PipelineStore(s.rt.db).history(s.contacts[0])
        await s.rt.dispatcher.handle(inbound("/pipeline", kind="command"))
        overview = s.chan.sent[-1].text
        events = [e for e in await s.rt.db.events(limit=100_000) if e.kind == "pipeline.stage"]
    assert [(m.stage, m.actor) for m in history] == [("proposal", OPERATOR), ("customer", "stripe")]
    assert history[-1].actor == "stripe" and history[-1].reason == f"paid {s.invoices[0].number}"
    assert "lead 0, talking 0, proposal 0, customer 1, lost 0" in overview
    assert [e.payload["stage"] for e in events] == ["proposal", "customer"]  # each move is in the audit log


async def test_a_card_approved_on_its_own_first_is_not_approved_or_sent_again(tmp_path: Path) -> None:
    async with many_invoices(tmp_path) as s:
        await s.on(due_day(s) + timedelta(days=3))
        group = s.group()
        ana = next(m for m in s.reminders() if "To: ana@example.org" in m.text)
        await press(s.rt, button(ana, "Approve"))
        await press(s.rt, button(group, "Approve all 3"))
        await s.smtp.wait_delivered(3)
        await eventually(lambda: s.sent_reminders() == 3, what="3 outcomes")
        await asyncio.sleep(0.3)
    assert sorted(r for d in s.smtp.delivered for r in d.rcpt_tos) == [
        "ana@example.org",
        "ben@example.org",
        "cleo@example.org",
    ]
    result = edited(s.chan, "3 payment reminders")
    assert result is not None and "Approved 2 of 3 by " in result.text
    assert f"already approved by {OPERATOR}." in result.text
