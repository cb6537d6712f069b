"""The Stripe invoice connector with the real ``stripe`` SDK against the fake Stripe API (real HTTP),
and real records in SQLite: one invoice per approval whatever fails on the way (I2, I7)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.base import (
    ActionError,
    AmbiguousOutcome,
    Context,
    Deps,
    Executed,
    PermanentError,
    Progress,
    TemporaryError,
)
from connectors.contacts import resolve_person
from connectors.stripe_invoice_actions import InvoiceAction, VoidAction
from connectors.stripe_invoices import InvoiceSend, InvoiceVoid, connector
from connectors.stripe_money import minor_units, money
from connectors.stripe_settings import StripeSettings
from memory.db import open_database, utcnow
from memory.records import Contact, Invoice, Records
from tests.fakes.stripe_api import FakeStripe, decode_form

KEY = "coo-0123456789abcdef01234567"
# Today, read once, for every context and expected date here: a run that crosses midnight UTC changes none of them.
# Stripe's fake checks due dates against the real time; they are 14 days or more ahead of this.
TODAY = utcnow().date()
STEPS = ("customers.create", "invoices.create", "invoices.add_lines", "invoices.finalize", "invoices.send")


@dataclass
class Setup:
    fake: FakeStripe
    send: InvoiceSend
    void: InvoiceVoid
    records: Records
    saved: list[dict[str, Any]]

    def progress(self) -> Progress:
        """A progress store that keeps what the connector saved (as the outbox row does)."""

        async def save(steps: dict[str, Any]) -> None:
            self.saved.append(steps)

        return Progress(self.saved[-1] if self.saved else {}, save)

    def ctx(self) -> Context:
        return Context(records=self.records, currency="eur", today=TODAY)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    async with FakeStripe() as fake, open_database(tmp_path) as db:
        records = Records(db)
        await records.setup()
        settings = StripeSettings(api_key=SecretStr(fake.api_key), api_base_url=fake.api_base_url, timeout_s=5)
        send, void = connector(settings, Deps(records=records, currency="eur"))
        assert isinstance(send, InvoiceSend) and isinstance(void, InvoiceVoid)
        yield Setup(fake, send, void, records, [])
        await send.close()


def invoice(**kw: Any) -> InvoiceAction:
    fields: dict[str, Any] = {
        "customer_name": "Ana Silva",
        "customer_email": "ana@example.org",
        "currency": "eur",
        "lines": [
            {"description": "Website redesign", "quantity": 1, "unit_amount": 120050},
            {"description": "Hosting (months)", "quantity": 3, "unit_amount": 1500},
        ],
        "due": TODAY + timedelta(days=14),
    }
    fields.update(kw)
    return InvoiceAction.model_validate(fields)


def a_day_passes(setup: Setup) -> None:
    """The retry comes 25 h after the draft was made: Stripe has pruned the keys (it may after 24 h)."""
    setup.fake.forget_idempotency_keys()
    progress = setup.saved[-1]
    progress["invoice_at"] = progress.get("invoice_at", utcnow().timestamp()) - 25 * 3600


def only_invoice(fake: FakeStripe) -> dict[str, Any]:
    assert len(fake.invoices) == 1, f"{len(fake.invoices)} invoices at Stripe"
    return next(iter(fake.invoices.values()))


async def test_one_invoice_with_the_lines_finalized_and_sent_once(setup: Setup) -> None:
    contact = await setup.records.upsert("contact", {"name": "Ana Silva", "emails": ["ana@example.org"]}, "op")
    action = invoice(contact_id=contact.id)
    done = await setup.send.execute(action, KEY, setup.progress())
    remote = only_invoice(setup.fake)
    assert remote["status"] == "open" and remote["collection_method"] == "send_invoice"
    assert remote["pending_invoice_items_behavior"] == "exclude" and remote["currency"] == "eur"
    assert [(line["description"], line["quantity"], line["amount"]) for line in remote["lines"]["data"]] == [
        ("Website redesign", 1, 120050),
        ("Hosting (months)", 3, 4500),
    ]
    assert remote["total"] == action.total == 124550
    assert setup.fake.sent == [remote["id"]]
    assert done == Executed(remote["id"], f"Invoice {remote['number']}, 1,245.50 EUR, {remote['hosted_invoice_url']}")
    # every POST carried its own key, derived from the approval's key and the step
    keys = [r.key for r in setup.fake.requests if r.method == "POST"]
    assert keys == [f"{KEY}-customer", f"{KEY}-invoice", f"{KEY}-lines", f"{KEY}-finalize", f"{KEY}-send"]
    stored = await setup.records.get("contact", contact.id)
    assert stored is not None and isinstance(stored.data, Contact)
    assert stored.data.stripe_customer_id == remote["customer"]
    recorded = await setup.records.find_one("invoice", "stripe_id", remote["id"])
    assert recorded is not None and isinstance(recorded.data, Invoice)
    assert (recorded.data.number, recorded.data.amount, recorded.data.currency, recorded.data.status) == (
        remote["number"],
        1245.50,
        "EUR",
        "sent",
    )
    assert recorded.data.url == remote["hosted_invoice_url"] and recorded.data.contact_id == contact.id


async def test_a_known_customer_is_reused_not_created(setup: Setup) -> None:
    await setup.send.execute(invoice(), KEY, setup.progress())
    setup.saved.clear()
    await setup.send.execute(invoice(), "coo-second", setup.progress())
    assert len(setup.fake.customers) == 1 and len(setup.fake.invoices) == 2
    assert len(setup.fake.executed("customers.create")) == 1
    contacts = await setup.records.all("contact")  # a new customer became one contact, not two
    assert len(contacts) == 1 and isinstance(contacts[0].data, Contact)
    assert contacts[0].data.stripe_customer_id == next(iter(setup.fake.customers))


async def test_a_crash_right_after_the_customer_step_keeps_the_customer_on_the_contact(setup: Setup) -> None:
    class Crash(Exception):
        pass

    async def die(steps: dict[str, Any]) -> None:
        raise Crash  # the process died while storing the step's progress

    with pytest.raises(Crash):
        await setup.send.execute(invoice(), KEY, Progress({}, die))
    before = len(setup.fake.requests)
    await setup.send.execute(invoice(), KEY, setup.progress())
    (contact,) = await setup.records.all("contact")
    assert isinstance(contact.data, Contact) and contact.data.stripe_customer_id == next(iter(setup.fake.customers))
    assert "customers.list" not in [r.endpoint for r in setup.fake.requests[before:]]  # known from the contact
    assert len(setup.fake.customers) == 1 and len(setup.fake.sent) == 1


async def test_the_second_address_of_a_contact_is_billed_at_that_address(setup: Setup) -> None:
    """I1: a customer saved on the contact for its other address is not the approved recipient."""
    emails = ["ceo@acme.example", "billing@acme.example"]
    await setup.records.upsert("contact", {"name": "Acme", "emails": emails}, "op")
    first = await resolve_person("ceo@acme.example", setup.records)
    to_first = invoice(customer_name=first.name, customer_email=first.email, contact_id=first.contact_id)
    await setup.send.execute(to_first, KEY, setup.progress())
    setup.saved.clear()
    second = await resolve_person("billing@acme.example", setup.records)
    action = invoice(customer_name=second.name, customer_email=second.email, contact_id=second.contact_id)
    done = await setup.send.execute(action, "coo-second", setup.progress())
    remote = setup.fake.invoices[done.external_id]
    assert remote["customer_email"] == action.customer_email == "billing@acme.example"
    assert sorted(c["email"] for c in setup.fake.customers.values()) == ["billing@acme.example", "ceo@acme.example"]
    # and back to the first address: its customer is found again, not made twice
    setup.saved.clear()
    again = await setup.send.execute(to_first, "coo-third", setup.progress())
    assert setup.fake.invoices[again.external_id]["customer_email"] == "ceo@acme.example"
    assert len(setup.fake.customers) == 2


async def test_a_contact_whose_email_changed_is_billed_at_the_new_address(setup: Setup) -> None:
    contact = await setup.records.upsert("contact", {"name": "Acme", "emails": ["old@acme.example"]}, "op")
    await setup.send.execute(invoice(customer_email="old@acme.example", contact_id=contact.id), KEY, setup.progress())
    await setup.records.upsert("contact", {"emails": ["new@acme.example"]}, "op", record_id=contact.id)
    setup.saved.clear()
    action = invoice(customer_email="new@acme.example", contact_id=contact.id)
    done = await setup.send.execute(action, "coo-second", setup.progress())
    remote = setup.fake.invoices[done.external_id]
    assert remote["customer_email"] == "new@acme.example"
    stored = await setup.records.get("contact", contact.id)
    assert stored is not None and isinstance(stored.data, Contact)
    assert stored.data.stripe_customer_id == remote["customer"]


async def test_a_saved_customer_deleted_at_stripe_is_replaced(setup: Setup) -> None:
    contact = await setup.records.upsert("contact", {"name": "Ana Silva", "emails": ["ana@example.org"]}, "op")
    first = await setup.send.execute(invoice(contact_id=contact.id), KEY, setup.progress())
    gone = setup.fake.invoices[first.external_id]["customer"]
    setup.fake.delete_customer(gone)
    setup.saved.clear()
    done = await setup.send.execute(invoice(contact_id=contact.id), "coo-second", setup.progress())
    remote = setup.fake.invoices[done.external_id]
    assert remote["customer"] != gone and remote["customer_email"] == "ana@example.org"


@pytest.mark.parametrize("step", STEPS)
async def test_connection_dropped_after_a_step_is_completed_with_the_same_keys(setup: Setup, step: str) -> None:
    """Stripe did the step but the answer never arrived: the retry replays the same key, so nothing twice."""
    setup.fake.drop_next(step)
    with pytest.raises(TemporaryError):
        await setup.send.execute(invoice(), KEY, setup.progress())
    done = await setup.send.execute(invoice(), KEY, setup.progress())
    remote = only_invoice(setup.fake)
    assert setup.fake.sent == [remote["id"]] and done.external_id == remote["id"]
    assert len(setup.fake.customers) == 1
    assert len(remote["lines"]["data"]) == 2 and remote["total"] == 124550
    replayed = [r for r in setup.fake.calls(step) if r.replayed]
    assert len(replayed) == (0 if step == "customers.create" else 1)  # a created customer is found by email
    assert len(await setup.records.all("invoice")) == 1


async def test_lines_added_but_unanswered_are_not_added_again_after_stripe_pruned_the_keys(setup: Setup) -> None:
    """I2: Stripe forgets keys after 24 h; the resumed invoice is read first, so the lines are added once."""
    action = invoice()
    setup.fake.drop_next("invoices.add_lines")  # the lines were added; the answer never arrived
    with pytest.raises(TemporaryError):
        await setup.send.execute(action, KEY, setup.progress())
    assert "lines" not in setup.saved[-1]
    a_day_passes(setup)
    done = await setup.send.execute(action, KEY, setup.progress())
    remote = only_invoice(setup.fake)
    assert remote["total"] == action.total and len(remote["lines"]["data"]) == 2
    assert len(setup.fake.executed("invoices.add_lines")) == 1
    assert setup.fake.sent == [remote["id"]] and done.detail.startswith(f"Invoice {remote['number']}, 1,245.50 EUR")


async def test_more_lines_than_an_invoice_embeds_are_read_in_full_on_resume(setup: Setup) -> None:
    lines = [{"description": f"Item {i}", "quantity": 1, "unit_amount": 1000 + i} for i in range(12)]
    action = invoice(lines=lines)
    setup.fake.drop_next("invoices.add_lines")
    with pytest.raises(TemporaryError):
        await setup.send.execute(action, KEY, setup.progress())
    a_day_passes(setup)
    await setup.send.execute(action, KEY, setup.progress())
    remote = only_invoice(setup.fake)
    assert len(remote["lines"]["data"]) == 12 and remote["total"] == action.total
    assert [r.endpoint for r in setup.fake.requests if r.endpoint == "invoices.lines"] == ["invoices.lines"]
    assert setup.fake.sent == [remote["id"]]


async def test_a_finalize_done_but_unanswered_is_taken_from_stripe_after_the_keys_were_pruned(setup: Setup) -> None:
    setup.fake.drop_next("invoices.finalize")
    with pytest.raises(TemporaryError):
        await setup.send.execute(invoice(), KEY, setup.progress())
    a_day_passes(setup)
    done = await setup.send.execute(invoice(), KEY, setup.progress())
    remote = only_invoice(setup.fake)
    assert len(setup.fake.executed("invoices.finalize")) == 1 and setup.fake.sent == [remote["id"]]
    assert done == Executed(remote["id"], f"Invoice {remote['number']}, 1,245.50 EUR, {remote['hosted_invoice_url']}")


async def test_a_send_done_but_unanswered_is_not_emailed_again_after_the_keys_were_pruned(setup: Setup) -> None:
    setup.fake.drop_next("invoices.send")  # Stripe emailed the invoice; the answer never arrived
    with pytest.raises(TemporaryError):
        await setup.send.execute(invoice(), KEY, setup.progress())
    a_day_passes(setup)
    done = await setup.send.execute(invoice(), KEY, setup.progress())
    remote = only_invoice(setup.fake)
    assert setup.fake.sent == [remote["id"]] and done.external_id == remote["id"]
    assert setup.saved[-1]["sent"] is True


async def test_a_send_that_never_ran_is_sent_on_resume_after_the_keys_were_pruned(setup: Setup) -> None:
    setup.fake.fail_next("invoices.send", 503)  # refused before anything ran
    with pytest.raises(TemporaryError):
        await setup.send.execute(invoice(), KEY, setup.progress())
    a_day_passes(setup)
    await setup.send.execute(invoice(), KEY, setup.progress())
    assert setup.fake.sent == [only_invoice(setup.fake)["id"]]


async def test_a_resumed_invoice_that_stripe_has_otherwise_is_left_to_the_operator(setup: Setup) -> None:
    """Neither "not done" nor "done as approved": nothing is guessed, finalized or sent."""
    setup.fake.drop_next("invoices.add_lines")
    with pytest.raises(TemporaryError):
        await setup.send.execute(invoice(), KEY, setup.progress())
    remote = only_invoice(setup.fake)
    async with httpx.AsyncClient(base_url=setup.fake.api_base_url) as http:  # someone edited the draft in Stripe
        auth = {"Authorization": f"Bearer {setup.fake.api_key}"}
        edit = await http.post(f"/v1/invoices/{remote['id']}/add_lines", data={"lines[0][amount]": "5"}, headers=auth)
        assert edit.status_code == 200
    a_day_passes(setup)
    for _ in range(2):  # and again on Retry
        with pytest.raises(AmbiguousOutcome, match=f"{remote['id']}.*check it in Stripe"):
            await setup.send.execute(invoice(), KEY, setup.progress())
    assert setup.fake.calls("invoices.finalize") == [] and setup.fake.sent == []
    assert len(setup.fake.executed("invoices.add_lines")) == 2  # ours and the edit, nothing more


async def test_an_invoice_voided_at_stripe_before_the_resumed_send_is_left_to_the_operator(setup: Setup) -> None:
    setup.fake.fail_next("invoices.send", 503)
    with pytest.raises(TemporaryError):
        await setup.send.execute(invoice(), KEY, setup.progress())
    remote = only_invoice(setup.fake)
    remote["status"] = "void"  # voided in Stripe's dashboard
    a_day_passes(setup)
    with pytest.raises(AmbiguousOutcome, match="void"):
        await setup.send.execute(invoice(), KEY, setup.progress())
    assert setup.fake.calls("invoices.send")[-1].status == 503 and setup.fake.sent == []


async def test_when_stripe_cannot_say_whether_it_was_sent_it_is_left_to_the_operator(setup: Setup) -> None:
    setup.fake.drop_next("invoices.send")
    with pytest.raises(TemporaryError):
        await setup.send.execute(invoice(), KEY, setup.progress())
    a_day_passes(setup)
    setup.fake.fail_next("events.list", 403, message="The provided key does not have the permission rak_event_read.")
    with pytest.raises(AmbiguousOutcome, match="emailed"):
        await setup.send.execute(invoice(), KEY, setup.progress())
    assert setup.fake.sent == [only_invoice(setup.fake)["id"]]


async def test_a_progress_stored_without_the_drafts_time_is_read_back_from_stripe(setup: Setup) -> None:
    """Rows stored before the time was kept: the keys' age is unknown, so Stripe's state decides."""
    setup.fake.drop_next("invoices.add_lines")
    with pytest.raises(TemporaryError):
        await setup.send.execute(invoice(), KEY, setup.progress())
    setup.saved[-1].pop("invoice_at", None)
    setup.fake.forget_idempotency_keys()
    await setup.send.execute(invoice(), KEY, setup.progress())
    assert len(setup.fake.calls("invoices.add_lines")) == 1 and only_invoice(setup.fake)["total"] == 124550


async def test_a_send_resumed_after_stripes_events_are_gone_is_left_to_the_operator(setup: Setup) -> None:
    setup.fake.drop_next("invoices.send")
    with pytest.raises(TemporaryError):
        await setup.send.execute(invoice(), KEY, setup.progress())
    a_day_passes(setup)
    only_invoice(setup.fake)["status_transitions"]["finalized_at"] -= 31 * 24 * 3600  # Stripe lists 30 days
    with pytest.raises(AmbiguousOutcome, match="too long ago"):
        await setup.send.execute(invoice(), KEY, setup.progress())
    assert len(setup.fake.sent) == 1


async def test_resuming_with_stored_progress_makes_no_call_for_the_steps_done(setup: Setup) -> None:
    setup.fake.fail_next("invoices.finalize", 503)
    with pytest.raises(TemporaryError, match="503"):
        await setup.send.execute(invoice(), KEY, setup.progress())
    before = len(setup.fake.requests)
    await setup.send.execute(invoice(), KEY, setup.progress())
    after = [r.endpoint for r in setup.fake.requests[before:]]
    assert after == ["invoices.finalize", "invoices.send"]
    assert setup.fake.sent == [only_invoice(setup.fake)["id"]]


async def test_402_is_a_permanent_failure_with_stripes_reason(setup: Setup) -> None:
    setup.fake.fail_next("invoices.finalize", 402, message="This account cannot create invoices in EUR.")
    with pytest.raises(PermanentError, match="This account cannot create invoices in EUR"):
        await setup.send.execute(invoice(), KEY, setup.progress())
    assert setup.fake.sent == []


async def test_429_then_success_gives_one_invoice(setup: Setup) -> None:
    setup.fake.fail_next("invoices.create", 429)
    with pytest.raises(TemporaryError, match="Too many requests"):
        await setup.send.execute(invoice(), KEY, setup.progress())
    await setup.send.execute(invoice(), KEY, setup.progress())
    assert len(setup.fake.invoices) == 1 and len(setup.fake.sent) == 1
    assert [r.status for r in setup.fake.calls("invoices.create")] == [429, 200]  # the 429 was not stored


async def test_a_500_stored_for_a_key_is_replayed_and_never_becomes_a_second_send(setup: Setup) -> None:
    setup.fake.fail_next("invoices.send", 500)
    for _ in range(3):
        with pytest.raises(TemporaryError, match="500"):
            await setup.send.execute(invoice(), KEY, setup.progress())
    sends = setup.fake.calls("invoices.send")
    assert [(r.status, r.replayed) for r in sends] == [(500, False), (500, True), (500, True)]
    assert setup.fake.sent == []


async def test_the_same_key_with_a_different_request_is_ambiguous_never_retried(setup: Setup) -> None:
    await setup.send.execute(invoice(), KEY, setup.progress())
    setup.saved.clear()
    with pytest.raises(AmbiguousOutcome, match="repeated key"):
        await setup.send.execute(invoice(due=TODAY + timedelta(days=30)), KEY, setup.progress())
    assert len(setup.fake.invoices) == 1


async def test_unreachable_stripe_is_temporary(tmp_path: Path) -> None:
    from tests.fakes.smtp_server import free_port

    settings = StripeSettings(
        api_key=SecretStr("sk_test_x"), api_base_url=f"http://127.0.0.1:{free_port()}", timeout_s=2
    )
    send, _ = connector(settings, Deps(records=None, currency="eur"))
    try:
        with pytest.raises(TemporaryError):
            await send.execute(invoice(), KEY)
    finally:
        await send.close()


async def test_void_of_a_sent_invoice_voids_it_at_stripe_and_in_records(setup: Setup) -> None:
    action = invoice()
    done = await setup.send.execute(action, KEY, setup.progress())
    undo = setup.send.compensate(action, done)
    assert isinstance(undo, VoidAction)
    remote = only_invoice(setup.fake)
    assert (undo.invoice_id, undo.number, undo.total) == (remote["id"], remote["number"], 124550)
    voided = await setup.void.execute(undo, "coo-void-key")
    assert remote["status"] == "void" and setup.fake.voided == [remote["id"]]
    assert voided.detail == f"Invoice {remote['number']} is void."
    recorded = await setup.records.find_one("invoice", "stripe_id", remote["id"])
    assert recorded is not None and isinstance(recorded.data, Invoice) and recorded.data.status == "void"
    # a paid invoice cannot be voided: Stripe's reason, permanently
    second = await setup.send.execute(invoice(), "coo-other", Progress({}, _ignore))
    setup.fake.pay(second.external_id)
    with pytest.raises(PermanentError, match="only void an open or uncollectible"):
        await setup.void.execute(setup.send.compensate(invoice(), second), "coo-void-2")  # type: ignore[arg-type]


async def test_reconcile_records_paid_and_void(setup: Setup) -> None:
    first = await setup.send.execute(invoice(), KEY, Progress({}, _ignore))
    second = await setup.send.execute(invoice(customer_name="Bo", customer_email="bo@example.org"), "coo-2")
    setup.fake.pay(first.external_id)
    setup.fake.invoices[second.external_id]["status"] = "void"  # voided in Stripe's dashboard
    changes = await setup.send.reconcile()
    assert len(changes) == 2 and any(": paid" in c for c in changes) and any(": void" in c for c in changes)
    statuses = {r.data.stripe_id: r.data.status for r in await setup.records.all("invoice")}  # type: ignore[attr-defined]
    assert statuses == {first.external_id: "paid", second.external_id: "void"}
    assert await setup.send.reconcile() == []  # nothing open any more: nothing read, nothing changed


async def test_check_reads_the_balance_and_tells_a_rejected_key(setup: Setup) -> None:
    assert await setup.send.check() == (True, f"key accepted at {setup.fake.api_base_url}")
    assert [r.endpoint for r in setup.fake.requests] == ["balance.retrieve"]
    bad, _ = connector(
        StripeSettings(api_key=SecretStr("sk_test_wrong"), api_base_url=setup.fake.api_base_url),
        Deps(records=None, currency="eur"),
    )
    try:
        assert await bad.check() == (False, "the key was rejected")
    finally:
        await bad.close()
    unconfigured, _ = connector(StripeSettings(), Deps(records=None, currency="eur"))
    assert (await unconfigured.check())[0] is None


# ---- proposing and editing ---------------------------------------------------------------------


async def test_command_builds_one_line_in_the_operators_currency(setup: Setup) -> None:
    await setup.records.upsert("contact", {"name": "Ana Silva", "emails": ["ana@example.org"]}, "op")
    action = await setup.send.from_command("Ana Silva 1200.50 | Website redesign", setup.ctx())
    assert (action.customer_name, action.customer_email, action.currency) == ("Ana Silva", "ana@example.org", "eur")
    assert [(line.description, line.quantity, line.unit_amount) for line in action.lines] == [
        ("Website redesign", 1, 120050)
    ]
    assert action.due == TODAY + timedelta(days=14)
    preview = setup.send.preview(action).render()
    assert "Customer: Ana Silva <ana@example.org>" in preview and f"Due: {action.due.isoformat()}" in preview
    assert "- Website redesign: 1 × 1,200.50 EUR = 1,200.50 EUR" in preview and "Total: 1,200.50 EUR" in preview


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ana@example.org 1200", "Usage: /invoice"),
        ("ana@example.org | Website", "Usage: /invoice"),
        ("ana@example.org 12x0 | Website", "is not an amount"),
        ("ana@example.org -5 | Website", "is not an amount"),
        ("ana@example.org 0 | Website", "not valid"),
        ("Nobody Known 100 | Website", "no contact named 'Nobody Known'"),
    ],
)
async def test_bad_commands_are_refused_with_a_clear_reason(setup: Setup, text: str, message: str) -> None:
    with pytest.raises(ActionError, match=message):
        await setup.send.from_command(text, setup.ctx())


async def test_edit_changes_the_amount_and_bad_edits_say_why(setup: Setup) -> None:
    action = await setup.send.from_command("ana@example.org 100 | Website", setup.ctx())
    edited = await setup.send.edit(action, "amount=1500\ndescription=Website, phase 2", setup.ctx())
    assert edited.total == 150000 and edited.lines[0].description == "Website, phase 2"
    assert edited.digest() != action.digest()
    for bad, message in [
        ("amount=lots", "is not an amount"),
        ("amont=1500", "could not read that edit"),
        ("due=2020-01-01", "due date must be after today"),
        ("due=tomorrowish", "due must be a date"),
        ("quantity=two", "quantity must be a whole number"),
    ]:
        with pytest.raises(ActionError, match=message):
            await setup.send.edit(action, bad, setup.ctx())


def test_amounts_in_minor_units() -> None:
    assert minor_units("1200", "eur") == 120000 and minor_units("1200,5", "eur") == 120050
    assert minor_units("1200", "jpy") == 1200 and money(1200, "jpy") == "1,200 JPY"
    with pytest.raises(ActionError, match="no cents"):
        minor_units("10.5", "jpy")


@pytest.mark.parametrize("currency", ["kwd", "bhd", "jod", "omr", "tnd"])
def test_three_decimal_currencies_count_thousandths_ending_in_zero(currency: str) -> None:
    """Stripe counts these in thousandths and takes only amounts whose last digit is 0."""
    code = currency.upper()
    assert minor_units("5", currency) == 5000 and minor_units("5.12", currency) == 5120
    assert minor_units("5.120", currency) == 5120 and minor_units("1,200.5", currency) == 1200500
    with pytest.raises(ActionError, match="the decimal mark is a dot"):
        minor_units("1200,5", currency)
    assert money(5120, currency) == f"5.120 {code}" and money(1234567890, currency) == f"1,234,567.890 {code}"
    with pytest.raises(ActionError, match=f"{code} amounts at Stripe end in 0"):
        minor_units("5.124", currency)
    with pytest.raises(ActionError, match="is not an amount"):
        minor_units("5.1234", currency)


def test_two_decimal_currencies_refuse_a_third_decimal() -> None:
    assert minor_units("5.12", "eur") == 512 and money(512, "eur") == "5.12 EUR"
    with pytest.raises(ActionError, match="USD has 2 decimals: '5.125' has 3"):
        minor_units("5.125", "usd")
    with pytest.raises(ActionError, match="USD has 2 decimals: '1.200' has 3"):
        minor_units("1.200", "usd")  # a thousands dot is not read as 1.20
    with pytest.raises(ActionError, match="'5.120' is ambiguous in EUR: 5120 or 5.120"):
        minor_units("5.120", "eur")


async def test_an_invoice_in_kuwaiti_dinars_is_billed_shown_and_recorded_in_dinars(setup: Setup) -> None:
    ctx = Context(records=setup.records, currency="kwd", today=TODAY)
    action = await setup.send.from_command("ana@example.org 1200.5 | Website redesign", ctx)
    assert action.lines[0].unit_amount == 1200500
    preview = setup.send.preview(action).render()
    assert "- Website redesign: 1 × 1,200.500 KWD = 1,200.500 KWD" in preview and "Total: 1,200.500 KWD" in preview
    done = await setup.send.execute(action, KEY, setup.progress())
    remote = only_invoice(setup.fake)
    assert remote["currency"] == "kwd" and remote["total"] == 1200500
    assert done.detail.startswith(f"Invoice {remote['number']}, 1,200.500 KWD")
    recorded = await setup.records.find_one("invoice", "stripe_id", remote["id"])
    assert recorded is not None and isinstance(recorded.data, Invoice)
    assert (recorded.data.amount, recorded.data.currency) == (1200.5, "KWD")


# ---- the fake itself, through raw HTTP: what the connector relies on it to refuse --------------


def test_form_bodies_decode_like_stripe() -> None:
    pairs = [
        ("customer", "cus_1"),
        ("metadata[coo_key]", "k"),
        ("lines[0][price_data][unit_amount]", "1200"),
        ("lines[0][quantity]", "2"),
        ("lines[1][amount]", "5"),
        ("expand[]", "lines"),
    ]
    assert decode_form(pairs) == {
        "customer": "cus_1",
        "metadata": {"coo_key": "k"},
        "lines": [{"price_data": {"unit_amount": "1200"}, "quantity": "2"}, {"amount": "5"}],
        "expand": ["lines"],
    }


async def test_fake_refuses_wrong_transitions() -> None:
    async with FakeStripe() as fake, httpx.AsyncClient(base_url=fake.api_base_url) as http:
        auth = {"Authorization": f"Bearer {fake.api_key}"}
        cus = (await http.post("/v1/customers", data={"email": "a@b.org"}, headers=auth)).json()["id"]
        due = str(int(utcnow().timestamp()) + 86400)
        form = {"customer": cus, "collection_method": "send_invoice", "due_date": due}
        inv = (await http.post("/v1/invoices", data=form, headers=auth)).json()["id"]
        early = await http.post(f"/v1/invoices/{inv}/send", headers=auth)
        assert early.status_code == 400 and "draft" in early.json()["error"]["message"]
        assert (await http.post(f"/v1/invoices/{inv}/finalize", headers=auth)).status_code == 200
        late = await http.post(f"/v1/invoices/{inv}/add_lines", data={"lines[0][amount]": "5"}, headers=auth)
        assert late.status_code == 400 and late.json()["error"]["type"] == "invalid_request_error"
        again = await http.post(f"/v1/invoices/{inv}/finalize", headers=auth)
        assert again.status_code == 400
        fake.pay(inv)
        paid = await http.post(f"/v1/invoices/{inv}/void", headers=auth)
        assert paid.status_code == 400 and "only void" in paid.json()["error"]["message"]
        keyed = {**auth, "Idempotency-Key": "k1"}
        first = await http.post("/v1/customers", data={"email": "x@y.org"}, headers=keyed)
        same = await http.post("/v1/customers", data={"email": "x@y.org"}, headers=keyed)
        other = await http.post("/v1/customers", data={"email": "z@y.org"}, headers=keyed)
        assert same.json() == first.json() and same.headers["Idempotent-Replayed"] == "true"
        assert other.status_code == 400 and other.json()["error"]["type"] == "idempotency_error"
        unauthorized = await http.get("/v1/balance", headers={"Authorization": "Bearer sk_test_nope"})
        assert unauthorized.status_code == 401


async def _ignore(_: dict[str, Any]) -> None:
    return None
