"""Invoices end to end: the real runtime (dispatcher, approvals, outbox, digest), the real ``stripe`` SDK
against the fake Stripe API over HTTP, real SQLite. Nothing reaches Stripe before the tap (I1); one
approval gives one invoice, sent once, whatever fails (I2, I7)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from bot.messages import InboundMessage, OutboundMessage
from bot.running import Runtime
from bot.runtime import open_runtime
from memory.db import utcnow
from memory.records import Contact, Invoice, Records
from tests.conftest import DateClock, RecordingChannel, llm_settings, make_settings
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.polling import eventually
from tests.fakes.stripe_api import FakeStripe

OPERATOR = "telegram:1001"
_keys = iter(range(10**6))
INVOICE = "/invoice Ana Silva 1200 | Website redesign"


# The runtime's today, read once: a run that crosses midnight UTC changes no date a test expects. Stripe's fake
# checks due dates against the real time; they are 14 days or more ahead of this.
CALENDAR = DateClock(utcnow())


@asynccontextmanager
async def runtime(tmp_path: Path, **overrides: Any) -> AsyncIterator[tuple[Runtime, RecordingChannel, FakeStripe]]:
    async with FakeStripe() as fake:
        outbox = {"backoff_base_s": 0.02, "poll_s": 0.05, **overrides.pop("outbox", {})}
        stripe = {"api_key": fake.api_key, "api_base_url": fake.api_base_url, "timeout_s": 5}
        settings = make_settings(tmp_path, stripe=stripe, outbox=outbox, **overrides)
        async with open_runtime(settings, console=False, today=CALENDAR) as rt:
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            await _ana(rt)
            yield rt, chan, fake


async def _ana(rt: Runtime) -> str:
    return (await Records(rt.db).upsert("contact", {"name": "Ana Silva", "emails": ["ana@example.org"]}, "op")).id


def inbound(text: str = "", kind: str = "message", data: str | None = None) -> InboundMessage:
    return InboundMessage(
        channel="rec",
        chat_id="1001",
        sender=OPERATOR,
        text=text,
        kind=kind,  # type: ignore[arg-type]
        callback_data=data,
        update_key=f"inv:{next(_keys)}",
    )


def card(chan: RecordingChannel) -> OutboundMessage:
    return next(m for m in reversed(chan.sent) if m.buttons and m.edit_message_id is None)


def button(message: OutboundMessage, label: str) -> str:
    return next(b.data for b in message.buttons if b.label == label)


def edits(chan: RecordingChannel) -> list[OutboundMessage]:
    return [m for m in chan.sent if m.edit_message_id is not None]


def edited(chan: RecordingChannel, prefix: str) -> OutboundMessage | None:
    return next((m for m in reversed(edits(chan)) if m.text.startswith(prefix)), None)


async def press(rt: Runtime, data: str) -> None:
    await rt.dispatcher.handle(inbound(kind="callback", data=data))


async def test_approve_sends_one_invoice_with_the_cards_lines_and_the_card_shows_it(tmp_path: Path) -> None:
    async with runtime(tmp_path) as (rt, chan, fake):
        assert not rt.coordinator.llm.configured  # offline: the command needs no model
        await rt.dispatcher.handle(inbound(INVOICE, kind="command"))
        shown = card(chan)
        assert [b.label for b in shown.buttons] == ["Approve", "Edit", "Reject"]
        due = (CALENDAR().date() + timedelta(days=14)).isoformat()
        assert shown.text.startswith("Send this invoice?\n\nCustomer: Ana Silva <ana@example.org>\nDue: " + due)
        assert "- Website redesign: 1 × 1,200.00 USD = 1,200.00 USD\nTotal: 1,200.00 USD" in shown.text
        assert fake.requests == []  # nothing reaches Stripe before the tap (I1)
        await press(rt, button(shown, "Approve"))
        await eventually(lambda: edited(chan, "Sent at") is not None, what="the card shows the invoice")
        await press(rt, button(shown, "Approve"))  # a double tap does nothing more
        await asyncio.sleep(0.3)
        records = Records(rt.db)
        contact = (await records.find_contacts("ana@example.org"))[0]
        recorded = await records.all("invoice")
        events = await rt.db.events(limit=100_000)
    assert events and not any(fake.api_key in json.dumps(e.payload) for e in events)  # I4: the key is nowhere
    remote = next(iter(fake.invoices.values()))
    assert len(fake.invoices) == 1 and fake.sent == [remote["id"]]
    assert remote["status"] == "open" and remote["total"] == 120000 and remote["currency"] == "usd"
    assert [(x["description"], x["quantity"], x["amount"]) for x in remote["lines"]["data"]] == [
        ("Website redesign", 1, 120000)
    ]
    done = edited(chan, "Sent at")
    assert done is not None
    assert f"Invoice {remote['number']}, 1,200.00 USD, {remote['hosted_invoice_url']}" in done.text
    assert [b.label for b in done.buttons] == ["Void"]
    assert isinstance(contact.data, Contact) and contact.data.stripe_customer_id == remote["customer"]
    assert len(recorded) == 1 and isinstance(recorded[0].data, Invoice)
    assert (recorded[0].data.stripe_id, recorded[0].data.number, recorded[0].data.status) == (
        remote["id"],
        remote["number"],
        "sent",
    )
    assert chan.sent[-1].text.startswith("Already decided: approved")


async def test_reject_sends_nothing_to_stripe(tmp_path: Path) -> None:
    async with runtime(tmp_path) as (rt, chan, fake):
        await rt.dispatcher.handle(inbound(INVOICE, kind="command"))
        shown = card(chan)
        await press(rt, button(shown, "Reject"))
        await press(rt, button(shown, "Approve"))
        await asyncio.sleep(0.3)
    assert fake.requests == []
    assert edited(chan, "Rejected by telegram:1001. Nothing was sent.") is not None
    assert chan.sent[-1].text.startswith("Already decided: rejected")


async def test_edit_the_amount_gives_a_new_card_and_kills_the_old_one(tmp_path: Path) -> None:
    async with runtime(tmp_path) as (rt, chan, fake):
        await rt.dispatcher.handle(inbound(INVOICE, kind="command"))
        old = card(chan)
        old_id = button(old, "Approve").split(":")[1]
        await press(rt, button(old, "Edit"))
        assert chan.sent[-1].text.startswith("Send the corrected invoice as lines")
        await rt.dispatcher.handle(inbound("amount=a lot"))  # unreadable: one clear error, the old card stays
        assert "'a lot' is not an amount" in chan.sent[-1].text
        still = await rt.approvals.store.get(old_id)
        assert still is not None and still.state == "pending"
        await rt.dispatcher.handle(inbound("amount=1500"))
        new = card(chan)
        new_id = button(new, "Approve").split(":")[1]
        assert new is not old and "Total: 1,500.00 USD" in new.text
        assert edited(chan, "Replaced by a corrected card") is not None
        old_row, new_row = await rt.approvals.store.get(old_id), await rt.approvals.store.get(new_id)
        assert old_row is not None and new_row is not None and old_row.digest != new_row.digest
        await press(rt, button(old, "Approve"))  # the old card is dead
        assert chan.sent[-1].text.startswith("Already decided: superseded")
        await press(rt, button(new, "Approve"))
        await eventually(lambda: len(fake.sent) == 1, what="the edited invoice sent")
        await asyncio.sleep(0.2)
    assert len(fake.invoices) == 1 and next(iter(fake.invoices.values()))["total"] == 150000


async def test_402_fails_the_card_with_stripes_reason(tmp_path: Path) -> None:
    async with runtime(tmp_path) as (rt, chan, fake):
        fake.fail_next("invoices.finalize", 402, message="Your account cannot send invoices yet.")
        await rt.dispatcher.handle(inbound(INVOICE, kind="command"))
        await press(rt, button(card(chan), "Approve"))
        await eventually(lambda: edited(chan, "Failed:") is not None, what="a failed card")
        retries = await rt.db.events(kind="action.retry")
    failed = edited(chan, "Failed:")
    assert failed is not None and "Your account cannot send invoices yet." in failed.text
    assert retries == [] and fake.sent == []


async def test_429_then_success_gives_one_invoice(tmp_path: Path) -> None:
    async with runtime(tmp_path) as (rt, chan, fake):
        fake.fail_next("invoices.create", 429, times=2)
        await rt.dispatcher.handle(inbound(INVOICE, kind="command"))
        await press(rt, button(card(chan), "Approve"))
        await eventually(lambda: edited(chan, "Sent at") is not None, what="the sent card")
        retries = await rt.db.events(kind="action.retry")
    assert len(retries) == 2 and len(fake.invoices) == 1 and len(fake.sent) == 1


async def test_dropped_connection_after_send_is_replayed_with_the_same_key(tmp_path: Path) -> None:
    async with runtime(tmp_path) as (rt, chan, fake):
        fake.drop_next("invoices.send")
        await rt.dispatcher.handle(inbound(INVOICE, kind="command"))
        await press(rt, button(card(chan), "Approve"))
        await eventually(lambda: edited(chan, "Sent at") is not None, what="the sent card")
    sends = fake.calls("invoices.send")
    assert len(sends) == 2 and sends[0].key == sends[1].key and sends[1].replayed
    assert len(fake.sent) == 1 and len(fake.invoices) == 1


async def test_a_500_stored_for_a_key_ends_unknown_with_retry_and_retry_does_nothing_twice(tmp_path: Path) -> None:
    async with runtime(tmp_path, outbox={"max_attempts": 3}) as (rt, chan, fake):
        fake.fail_next("invoices.finalize", 500)
        await rt.dispatcher.handle(inbound(INVOICE, kind="command"))
        await press(rt, button(card(chan), "Approve"))
        await eventually(lambda: edited(chan, "Unknown outcome") is not None, what="an unknown outcome")
        unknown = edited(chan, "Unknown outcome")
        assert unknown is not None and [b.label for b in unknown.buttons] == ["Retry"]
        assert "gave up after 3 attempts" in unknown.text
        finalizes = len(fake.calls("invoices.finalize"))
        await press(rt, button(unknown, "Retry"))
        await eventually(lambda: len(fake.calls("invoices.finalize")) == finalizes + 1, what="the retried attempt")
        await eventually(lambda: edits(chan)[-1].text.startswith("Unknown outcome"), what="unknown again")
        await press(rt, button(unknown, "Retry"))  # the old button of the same card: one more round, same keys
        await asyncio.sleep(0.3)
    # every finalize after the first was Stripe's stored 500 replayed; nothing was made or sent twice
    assert all(r.replayed for r in fake.calls("invoices.finalize")[1:])
    assert len(fake.invoices) == 1 and len(fake.customers) == 1 and fake.sent == []
    assert len(fake.executed("invoices.add_lines")) == 1


async def test_void_button_proposes_a_void_card_and_approving_it_voids(tmp_path: Path) -> None:
    async with runtime(tmp_path) as (rt, chan, fake):
        await rt.dispatcher.handle(inbound(INVOICE, kind="command"))
        await press(rt, button(card(chan), "Approve"))
        await eventually(lambda: edited(chan, "Sent at") is not None, what="the sent card")
        sent = edited(chan, "Sent at")
        assert sent is not None
        await press(rt, button(sent, "Void"))
        void_card = card(chan)
        remote = next(iter(fake.invoices.values()))
        assert void_card.text.startswith("Void this invoice?")
        assert f"Invoice: {remote['number']} ({remote['id']})" in void_card.text
        assert "Total: 1,200.00 USD" in void_card.text and remote["status"] == "open"  # nothing before the tap
        await press(rt, button(sent, "Void"))  # pressed twice: the same void card, not a second one
        assert len(await rt.approvals.store.list_approvals("pending")) == 1
        await press(rt, button(void_card, "Approve"))
        await eventually(lambda: edited(chan, "Voided at") is not None, what="the voided card")
        records = Records(rt.db)
        recorded = await records.find_one("invoice", "stripe_id", remote["id"])
    assert remote["status"] == "void" and fake.voided == [remote["id"]]
    assert recorded is not None and isinstance(recorded.data, Invoice) and recorded.data.status == "void"


async def test_reconcile_and_digest_say_what_got_paid_and_what_is_overdue(tmp_path: Path) -> None:
    async with runtime(tmp_path) as (rt, chan, fake):
        await rt.dispatcher.handle(inbound("/invoice ana@example.org 1200 | Website", kind="command"))
        await press(rt, button(card(chan), "Approve"))
        await rt.dispatcher.handle(inbound("/invoice bo@example.org 300 | Logo", kind="command"))
        await press(rt, button(card(chan), "Approve"))
        await eventually(lambda: len(fake.sent) == 2, what="two invoices sent")
        await eventually(lambda: len([m for m in edits(chan) if m.text.startswith("Sent at")]) == 2)
        records = Records(rt.db)
        first, second = fake.sent
        fake.pay(first)
        # the second one is now past its due date (as if two weeks went by)
        late = await records.find_one("invoice", "stripe_id", second)
        assert late is not None
        yesterday = (CALENDAR().date() - timedelta(days=1)).isoformat()
        await records.upsert("invoice", {"due": yesterday}, "test", record_id=late.id)
        await rt.dispatcher.handle(inbound("/digest", kind="command"))
        digest = next(m.text for m in reversed(chan.sent) if m.text.startswith("Digest for"))
        await rt.dispatcher.handle(inbound("/digest", kind="command"))
        again = next(m.text for m in reversed(chan.sent) if m.text.startswith("Digest for"))
        paid = await records.find_one("invoice", "stripe_id", first)
    numbers = {i: fake.invoices[i]["number"] for i in (first, second)}
    assert paid is not None and isinstance(paid.data, Invoice) and paid.data.status == "paid"
    assert f"Paid since the last digest:\n- invoice {numbers[first]} (Ana Silva): 1,200.00 USD" in digest
    assert f"- invoice {numbers[second]}: 300.00 USD (due {yesterday}) OVERDUE" in digest
    assert "Paid since the last digest" not in again  # said once
    assert f"invoice {numbers[second]}: 300.00 USD (due {yesterday}) OVERDUE" in again  # still owed


async def test_a_replayed_invoice_command_finds_its_card_without_building_it_again(
    tmp_path: Path, captured_logs: pytest.LogCaptureFixture
) -> None:
    """I3: a crash before the update was marked done replays `/invoice Ana …`. Its card is found by the
    delivery; the action is not built again (by then Ana's address may have changed, or the due date be
    another day's), so there is one card and no failure."""
    async with runtime(tmp_path) as (rt, chan, fake):
        command = inbound("/invoice Ana 1200 | Website", kind="command")
        await rt.dispatcher.handle(command)
        first = card(chan)
        records = Records(rt.db)
        ana = await records.find_one("contact", "name", "Ana Silva")
        assert ana is not None
        await records.upsert("contact", {"emails": ["ana@new.example"]}, "op", record_id=ana.id)
        await asyncio.gather(*await rt.dispatcher.replay([(command, None)], {"rec"}))
        approvals = await rt.approvals.store.list_approvals()
    assert "Ana Silva <ana@example.org>" in first.text
    assert len(approvals) == 1 and approvals[0].action["customer_email"] == "ana@example.org"
    assert not [r for r in captured_logs.records if r.levelno >= logging.ERROR]
    assert fake.sent == []


async def test_the_digest_shows_an_amount_with_its_currencys_decimals(tmp_path: Path) -> None:
    async with runtime(tmp_path, budget={"currency": "JPY"}) as (rt, chan, fake):
        await rt.dispatcher.handle(inbound("/invoice ana@example.org 120000 | Website", kind="command"))
        await press(rt, button(card(chan), "Approve"))
        await eventually(lambda: any(m.text.startswith("Sent at") for m in edits(chan)), what="the invoice sent")
        records = Records(rt.db)  # recorded before the card shows it sent
        sent = await records.find_one("invoice", "stripe_id", fake.sent[0])
        assert sent is not None
        await records.upsert("invoice", {"due": CALENDAR().date().isoformat()}, "test", record_id=sent.id)
        fake.pay(fake.sent[0])
        await rt.dispatcher.handle(inbound("/digest", kind="command"))
        digest = next(m.text for m in reversed(chan.sent) if m.text.startswith("Digest for"))
    assert "(Ana Silva): 120,000 JPY" in digest and "120,000.00" not in digest


async def test_the_model_proposes_an_invoice_through_its_tool(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.tool_call(
        "send_invoice",
        {
            "customer": "Ana Silva",
            "lines": [
                {"description": "Website redesign", "quantity": 1, "unit_amount": "1200"},
                {"description": "Hosting", "quantity": 12, "unit_amount": "15.50"},
            ],
            "due_days": 30,
        },
    )
    fake_llm.reply("The invoice to Ana went out after your approval.")
    async with runtime(tmp_path, llm=llm_settings(fake_llm)) as (rt, chan, fake):
        tools = [t["function"]["name"] for t in rt.approvals.registry.tool_schemas()]
        assert "send_invoice" in tools
        await rt.dispatcher.handle(inbound("bill Ana for the website and a year of hosting"))
        shown = card(chan)
        due = (CALENDAR().date() + timedelta(days=30)).isoformat()
        assert "Customer: Ana Silva <ana@example.org>" in shown.text and f"Due: {due}" in shown.text
        assert "- Hosting: 12 × 15.50 USD = 186.00 USD\nTotal: 1,386.00 USD" in shown.text
        assert fake.requests == []
        await press(rt, button(shown, "Approve"))
        await eventually(lambda: any(m.text.startswith("The invoice to Ana went out") for m in chan.sent))
    assert len(fake.sent) == 1 and next(iter(fake.invoices.values()))["total"] == 138600


async def test_a_thousands_comma_is_billed_as_thousands_and_a_decimal_comma_is_refused(tmp_path: Path) -> None:
    """In USD ``1,200`` is twelve hundred (it was billed as 1.20) and ``12,50`` is refused, not guessed."""
    async with runtime(tmp_path) as (rt, chan, fake):
        await rt.dispatcher.handle(inbound("/invoice ana@example.org 1,200 | Website", kind="command"))
        assert "Total: 1,200.00 USD" in card(chan).text
        cards = await rt.approvals.store.list_approvals()
        await rt.dispatcher.handle(inbound("/invoice ana@example.org 12,50 | Website", kind="command"))
        refusal = chan.sent[-1]
        assert await rt.approvals.store.list_approvals() == cards
    assert not refusal.buttons and refusal.text.count("\n") == 0
    assert "'12,50' is ambiguous: in USD the decimal mark is a dot" in refusal.text and "12.50" in refusal.text
    assert fake.requests == []


async def test_the_models_amounts_are_read_by_the_same_conventions(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    line = {"description": "Website redesign", "quantity": 1}
    fake_llm.tool_call("send_invoice", {"customer": "Ana Silva", "lines": [{**line, "unit_amount": "12,50"}]})
    fake_llm.tool_call("send_invoice", {"customer": "Ana Silva", "lines": [{**line, "unit_amount": "1,200"}]})
    async with runtime(tmp_path, llm=llm_settings(fake_llm)) as (rt, chan, fake):
        await rt.dispatcher.handle(inbound("bill Ana 1,200 for the website"))
        await eventually(lambda: any(m.buttons for m in chan.sent), what="the card")
        shown = card(chan)
        pending = await rt.approvals.store.list_approvals()
    refused = fake_llm.chat_requests[1]["messages"][-1]
    assert refused["role"] == "tool" and "'12,50' is ambiguous: in USD the decimal mark is a dot" in refused["content"]
    assert "- Website redesign: 1 × 1,200.00 USD = 1,200.00 USD\nTotal: 1,200.00 USD" in shown.text
    assert len(pending) == 1 and fake.requests == []


async def test_a_model_proposal_for_an_unknown_customer_makes_no_card(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.tool_call("send_invoice", {"customer": "Zed", "lines": [{"description": "X", "unit_amount": "10"}]})
    fake_llm.reply("Who is Zed? Tell me their email.")
    async with runtime(tmp_path, llm=llm_settings(fake_llm)) as (rt, chan, fake):
        await rt.dispatcher.handle(inbound("bill Zed 10"))
        await eventually(lambda: chan.sent and chan.sent[-1].text == "Who is Zed? Tell me their email.")
        pending = await rt.approvals.store.list_approvals()
    tool_answer = fake_llm.chat_requests[1]["messages"][-1]
    assert tool_answer["role"] == "tool" and "no contact named 'Zed'" in tool_answer["content"]
    assert pending == [] and fake.requests == []


async def test_the_send_invoice_schema_names_each_lines_fields(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    """The model sees what a line is (it was an untyped object: small models guessed its keys)."""
    async with runtime(tmp_path, llm=llm_settings(fake_llm)) as (rt, chan, _fake):
        await rt.dispatcher.handle(inbound("what can you bill?"))
        await eventually(lambda: bool(fake_llm.chat_requests) and bool(chan.sent), what="the answer")
    offered = fake_llm.chat_requests[0]["tools"]
    tool = next(t["function"] for t in offered if t["function"]["name"] == "send_invoice")
    line = tool["parameters"]["properties"]["lines"]["items"]
    assert line["type"] == "object" and set(line["properties"]) == {"description", "quantity", "unit_amount"}
    assert set(line["required"]) == {"description", "unit_amount"}
    assert line["properties"]["unit_amount"]["type"] == "string" and line["properties"]["quantity"]["type"] == "integer"


async def test_a_line_without_its_amount_is_refused_naming_the_field(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    no_amount = {"description": "Website", "quantity": 2}
    fake_llm.tool_call("send_invoice", {"customer": "Ana Silva", "lines": [no_amount]})
    # A JSON number is read as the amount's text (small models send numbers).
    fake_llm.tool_call(
        "send_invoice", {"customer": "Ana Silva", "lines": [{"description": "Website", "unit_amount": 450}]}
    )
    async with runtime(tmp_path, llm=llm_settings(fake_llm)) as (rt, chan, fake):
        await rt.dispatcher.handle(inbound("bill Ana for the website"))
        await eventually(lambda: any(m.buttons for m in chan.sent), what="the card")
        shown = card(chan)
        pending = await rt.approvals.store.list_approvals()
    refused = fake_llm.chat_requests[1]["messages"][-1]
    assert refused["role"] == "tool" and "lines.0.unit_amount: Field required" in refused["content"]
    assert "- Website: 1 × 450.00 USD = 450.00 USD\nTotal: 450.00 USD" in shown.text
    assert len(pending) == 1 and fake.requests == []


async def test_invoice_command_without_stripe_configured_says_what_to_set(tmp_path: Path) -> None:
    async with open_runtime(make_settings(tmp_path), console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(inbound(INVOICE, kind="command"))
        await rt.dispatcher.handle(inbound("/invoice ana@example.org", kind="command"))
    assert chan.sent[0].text == "Invoicing is not configured: set COO_STRIPE__API_KEY."
    assert chan.sent[1].text == "Invoicing is not configured: set COO_STRIPE__API_KEY."


async def test_the_daily_job_reconciles_even_when_no_operator_chat_is_known(tmp_path: Path) -> None:
    async with runtime(tmp_path) as (rt, chan, fake):
        group = partial(InboundMessage, "rec", "-100", OPERATOR, private=False)
        await rt.dispatcher.handle(group(INVOICE, kind="command", update_key="g:1"))
        await rt.dispatcher.handle(
            group("", kind="callback", callback_data=button(card(chan), "Approve"), update_key="g:2")
        )
        await eventually(lambda: len(fake.sent) == 1, what="the invoice sent")
        await eventually(lambda: edited(chan, "Sent at") is not None)
        fake.pay(fake.sent[0])
        sent_before = len(chan.sent)
        await rt.digest.scheduled()
        recorded = await Records(rt.db).find_one("invoice", "stripe_id", fake.sent[0])
    assert recorded is not None and isinstance(recorded.data, Invoice) and recorded.data.status == "paid"
    assert len(chan.sent) == sent_before  # nobody to send a digest to
