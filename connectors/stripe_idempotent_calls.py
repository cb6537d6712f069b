"""Every Stripe POST of the invoice kinds, each with its ``Idempotency-Key``: ``<approval key>-<step>``.

Sending is five steps: find the customer that has the approved address (or create it), create a
draft invoice that excludes pending items, add the lines, finalize, send. Each step's result is stored
before the next one. An execution a crash, a timeout or a dropped connection interrupted is completed
from the stored steps (I7). Within 23 h of the draft the remaining steps are replayed with the same
keys: Stripe answers a reused key with the stored response. Stripe may forget a key once it is 24 h
old, so later the invoice is read back first (:mod:`connectors.stripe_resume`) and a step whose effect
is there is not repeated; an invoice in any other state is left ``unknown`` for the operator to check
in Stripe, never guessed at (I2). Stripe's 4xx (invalid, 402) fail the card with Stripe's message;
429/5xx and network errors are retried with the same key (:func:`connectors.stripe_account.outcome_of`).
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any

import stripe

from connectors.amounts import decimals
from connectors.base import Executed, Progress
from connectors.stripe_account import StripeAccount, final_details, outcome_of
from connectors.stripe_invoice_actions import InvoiceAction, InvoiceLine, VoidAction
from connectors.stripe_money import money
from connectors.stripe_resume import AtStripe, keys_kept, read_back
from memory.addresses import normalise_address
from memory.db import utcnow
from memory.records import Contact, Record, Records


class InvoiceCalls:
    """The writes to Stripe: an invoice sent in recorded steps, an invoice voided."""

    def __init__(self, account: StripeAccount) -> None:
        self._account = account

    async def send(self, action: InvoiceAction, idempotency_key: str, progress: Progress | None = None) -> Executed:
        """Send the invoice: each step not yet recorded in ``progress``, with its key ``<idempotency_key>-<step>``."""
        if progress is None:
            progress = Progress({}, _discard)
        client = self._account.client()
        try:
            customer = progress.get("customer") or await self._customer(client, action, idempotency_key, progress)
            invoice_id = progress.get("invoice")
            at_stripe = None
            if invoice_id and not progress.get("sent") and not keys_kept(progress):
                # A step without its record may have run at Stripe, and Stripe may have forgotten its key:
                # replaying it could do it twice (I2). What the invoice at Stripe shows decides instead.
                at_stripe = await read_back(client, invoice_id, action, progress)
            invoice_id = invoice_id or await self._draft(client, action, customer, idempotency_key, progress)
            final = await self._complete(client, action, invoice_id, idempotency_key, progress, at_stripe)
        except stripe.StripeError as exc:
            raise outcome_of(exc) from None
        await self._record(action, invoice_id, final, progress)
        detail = f"Invoice {final['number']}, {money(int(final['total']), action.currency)}, {final['url']}".rstrip(
            ", "
        )
        return Executed(external_id=invoice_id, detail=detail)

    async def _customer(self, client: stripe.StripeClient, action: InvoiceAction, key: str, progress: Progress) -> str:
        records = self._account.records
        contact = await _contact(records, action)
        saved = contact.data.stripe_customer_id if contact and isinstance(contact.data, Contact) else ""
        # The contact keeps one customer id, but may have several addresses (or a changed one): Stripe
        # emails the invoice to the customer's address, so only a customer with the approved one will do (I1).
        known = saved if saved and await _billed_at(client, saved, action.customer_email) else ""
        if not known:
            found = await client.v1.customers.list_async(params={"email": action.customer_email, "limit": 1})
            known = found.data[0].id if found.data else ""
        if not known:
            created = await client.v1.customers.create_async(
                params={"email": action.customer_email, "name": action.customer_name},
                options={"idempotency_key": f"{key}-customer"},
            )
            known = created.id
        # The contact first: a crash before the progress is stored finds the id on the contact next time.
        if records is not None and (contact is None or getattr(contact.data, "stripe_customer_id", "") != known):
            fields: dict[str, Any] = {"stripe_customer_id": known}
            if contact is None:
                fields |= {"name": action.customer_name, "emails": [action.customer_email]}
            await records.upsert("contact", fields, "coo", record_id=contact.id if contact else None, source="stripe")
        await progress.record("customer", known)
        return known

    async def _draft(
        self, client: stripe.StripeClient, action: InvoiceAction, customer: str, key: str, progress: Progress
    ) -> str:
        due = datetime.combine(action.due, time(23, 59), tzinfo=UTC)
        invoice = await client.v1.invoices.create_async(
            params={
                "customer": customer,
                "collection_method": "send_invoice",
                "due_date": int(due.timestamp()),
                "currency": action.currency,
                "pending_invoice_items_behavior": "exclude",
                "auto_advance": False,
                "metadata": {"coo_key": key},
            },
            options={"idempotency_key": f"{key}-invoice"},
        )
        # Every later key is first used after this moment: their age at Stripe is at most the time since.
        await progress.record("invoice_at", utcnow().timestamp())
        await progress.record("invoice", invoice.id)
        return str(invoice.id)

    async def _complete(
        self,
        client: stripe.StripeClient,
        action: InvoiceAction,
        invoice_id: str,
        key: str,
        progress: Progress,
        at_stripe: AtStripe | None,
    ) -> dict[str, Any]:
        """Add the lines, finalize, send: each step not recorded and not already done at Stripe."""
        if not progress.get("lines"):
            if at_stripe is None or not at_stripe.lines:
                lines: Any = [_line(line, action.currency) for line in action.lines]
                await client.v1.invoices.add_lines_async(
                    invoice_id, params={"lines": lines}, options={"idempotency_key": f"{key}-lines"}
                )
            await progress.record("lines", True)
        final: dict[str, Any] | None = progress.get("final")
        if not final:
            final = at_stripe.final if at_stripe else None
            if not final:
                done = await client.v1.invoices.finalize_invoice_async(
                    invoice_id, params={"auto_advance": False}, options={"idempotency_key": f"{key}-finalize"}
                )
                final = final_details(done)
            await progress.record("final", final)
        if not progress.get("sent"):
            if at_stripe is None or not at_stripe.sent:
                await client.v1.invoices.send_invoice_async(invoice_id, options={"idempotency_key": f"{key}-send"})
            await progress.record("sent", True)
        return final

    async def _record(self, action: InvoiceAction, invoice_id: str, final: dict[str, Any], progress: Progress) -> None:
        records = self._account.records
        if records is None or progress.get("recorded"):
            return
        existing = await records.find_one("invoice", "stripe_id", invoice_id)
        await records.upsert(
            "invoice",
            {
                "number": final["number"],
                "contact_id": action.contact_id or "",
                "amount": float(Decimal(int(final["total"])).scaleb(-decimals(action.currency))),
                "currency": action.currency.upper(),
                "due": action.due.isoformat(),
                "status": "sent",
                "stripe_id": invoice_id,
                "url": final["url"],
                "customer": action.customer_name,
                "email": action.customer_email,
            },
            "coo",
            record_id=existing.id if existing else None,
            source="stripe",
        )
        await progress.record("recorded", True)

    async def void(self, action: VoidAction, idempotency_key: str) -> Executed:
        """Void the invoice at Stripe (key ``<idempotency_key>-void``), then in the records."""
        try:
            await self._account.client().v1.invoices.void_invoice_async(
                action.invoice_id, options={"idempotency_key": f"{idempotency_key}-void"}
            )
        except stripe.StripeError as exc:
            raise outcome_of(exc) from None
        records = self._account.records
        if records is not None and (found := await records.find_one("invoice", "stripe_id", action.invoice_id)):
            await records.upsert("invoice", {"status": "void"}, "coo", record_id=found.id, source="stripe")
        return Executed(external_id=action.invoice_id, detail=f"Invoice {action.number} is void.")


async def _contact(records: Records | None, action: InvoiceAction) -> Record | None:
    """The contact the invoice is for: by its id, else the one contact with that address (never a new one twice)."""
    if records is None:
        return None
    if action.contact_id:
        return await records.get("contact", action.contact_id)
    for record in await records.find_contacts(action.customer_email):
        if isinstance(record.data, Contact) and action.customer_email in record.data.emails:
            return record
    return None


async def _billed_at(client: stripe.StripeClient, customer_id: str, email: str) -> bool:
    """True when the Stripe customer exists and its email is exactly ``email``."""
    try:
        customer = await client.v1.customers.retrieve_async(customer_id)
    except stripe.InvalidRequestError as exc:
        if exc.code == "resource_missing":
            return False
        raise
    if getattr(customer, "deleted", False):
        return False
    return _same_address(getattr(customer, "email", None), email)


def _same_address(stripe_email: str | None, approved: str) -> bool:
    try:
        return normalise_address(stripe_email or "") == approved
    except ValueError:
        return False


def _line(line: InvoiceLine, currency: str) -> dict[str, Any]:
    return {
        "description": line.description,
        "quantity": line.quantity,
        "price_data": {
            "currency": currency,
            "product_data": {"name": line.description},
            "unit_amount": line.unit_amount,
        },
    }


async def _discard(_: dict[str, Any]) -> None:
    return None
