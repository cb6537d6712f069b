"""The receivables loop: open invoices get reminder cards on the cadence, once each (I7), and Stripe's
events settle them (the record updated, pending reminders withdrawn, the operator told)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from connectors.base import Action, ActionError
from graph.approvals.service import ApprovalService
from graph.receivables.cadence import amount_text, due_offset, reminder_email, reminder_id
from graph.receivables.settings import ReceivablesSettings
from memory.approvals import ApprovalRow
from memory.db import utcnow
from memory.records import Contact, Invoice, Records
from memory.stripe_events import StripeEvent
from prompts import messages

log = logging.getLogger(__name__)

THREAD = "receivables"
ORIGIN = "receivables"
ACTOR = "coo"
# What an event makes of the invoice record, and the notice it gives.
SETTLES = {"invoice.paid": "paid", "invoice.voided": "void", "invoice.marked_uncollectible": "uncollectible"}
NOTICES = {
    "invoice.paid": messages.PAID_NOTICE,
    "invoice.payment_failed": messages.PAYMENT_FAILED_NOTICE,
    "invoice.voided": messages.VOIDED_NOTICE,
    "invoice.marked_uncollectible": messages.UNCOLLECTIBLE_NOTICE,
    "charge.refunded": messages.REFUND_NOTICE,
}


@dataclass(frozen=True)
class Changed:
    """What a pass or an event changed: cards to show, cards withdrawn (with their status line), notices."""

    show: list[ApprovalRow] = field(default_factory=list)
    withdrawn: list[tuple[ApprovalRow, str]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


def condition(stripe_id: str) -> str:
    """The condition a reminder carries: sent only while the invoice is still owed at Stripe."""
    return f"invoice:{stripe_id}"


class Receivables:
    """Proposes due reminders and applies Stripe's events to the records and the pending cards."""

    def __init__(
        self,
        approvals: ApprovalService,
        records: Records,
        settings: ReceivablesSettings,
        timezone: str,
        decimals: Callable[[str], int],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """``decimals``: how many decimal places a currency's amounts have (0 for JPY, 2 for USD...)."""
        self._approvals = approvals
        self._decimals = decimals
        self._records = records
        self._settings = settings
        self._tz = ZoneInfo(timezone)
        self._clock = clock
        self._known: set[str] = set()  # reminder ids known to be proposed (a lookup saved per pass)
        self._unreachable: set[str] = set()  # invoices no reminder can be proposed for, logged once

    @property
    def records(self) -> Records:
        """The records it reads invoices from."""
        return self._records

    def today(self) -> date:
        """Today in the operator's zone."""
        return self._clock().astimezone(self._tz).date()

    async def check_due(self) -> Changed:
        """One pass: every open invoice whose next reminder day has come gets that reminder's card, once."""
        today = self.today()
        pending = await self.pending()
        changed = Changed()
        for record in await self._records.all("invoice"):
            invoice = record.data
            if not isinstance(invoice, Invoice) or invoice.status != "sent" or not invoice.stripe_id or not invoice.due:
                continue
            since = record.at.astimezone(self._tz).date()
            offset = due_offset(invoice.due, since, today, self._settings.cadence)
            if offset is None:
                continue
            approval_id = reminder_id(invoice.stripe_id, offset)
            if approval_id not in self._known:
                row = await self._propose(approval_id, invoice, today)
                if row is None:
                    continue
                # Not delivered anywhere yet (a crash or a failed send left it unseen): show it, and look
                # again next pass until it is delivered.
                if row.state == "pending" and not any(card.message_id for card in row.cards):
                    changed.show.append(row)
                else:
                    self._known.add(approval_id)
            current = (approval_id, self._approvals.approval_id(approval_id))  # its name, and its id on this install
            for older in pending.get(invoice.stripe_id, []):
                if older.id not in current and (gone := await self._approvals.withdraw(older, ACTOR)):
                    changed.withdrawn.append((gone, messages.REMINDER_REPLACED.format(approval_id=approval_id)))
        return changed

    async def _propose(self, approval_id: str, invoice: Invoice, today: date) -> ApprovalRow | None:
        earlier = await self._approvals.proposed(approval_id)
        if earlier is not None:
            return earlier.approval
        email = await self._address(invoice)
        if not email:
            if invoice.stripe_id not in self._unreachable:
                self._unreachable.add(invoice.stripe_id)
                log.warning("receivables: invoice %s has no customer address; no reminder", invoice.number)
            return None

        async def build() -> Action:
            subject, body = reminder_email(invoice, today, self._decimals(invoice.currency))
            fields = {"to": email, "subject": subject, "body": body, "only_if": condition(invoice.stripe_id)}
            return self._approvals.kind("email.send").build(fields)

        try:
            proposal = await self._approvals.propose_once(approval_id, build, THREAD, ORIGIN, ACTOR)
        except ActionError as exc:  # email not configured: nothing to propose with
            if invoice.stripe_id not in self._unreachable:
                self._unreachable.add(invoice.stripe_id)
                log.warning("receivables: reminder for %s not proposed: %s", invoice.number, exc)
            return None
        return proposal.approval

    async def _address(self, invoice: Invoice) -> str:
        if invoice.email:
            return invoice.email
        contact = await self._records.get("contact", invoice.contact_id) if invoice.contact_id else None
        if contact is not None and isinstance(contact.data, Contact) and contact.data.emails:
            return contact.data.emails[0]
        return ""

    async def pending(self) -> dict[str, list[ApprovalRow]]:
        """Pending reminder cards by the Stripe id of the invoice they chase."""
        found: dict[str, list[ApprovalRow]] = {}
        for row in await self._approvals.store.list_approvals("pending", limit=100_000):
            only_if = row.action.get("only_if") if row.kind == "email.send" else None
            if isinstance(only_if, str) and only_if.startswith("invoice:"):
                found.setdefault(only_if.removeprefix("invoice:"), []).append(row)
        return found

    async def apply(self, event: StripeEvent) -> Changed:
        """One stored event: the invoice record updated, its pending reminders withdrawn, the operator told.
        Safe to apply again (after a crash before it was marked handled)."""
        data = event.data
        invoice_id = str(data.get("invoice") or "") if event.type == "charge.refunded" else event.object_id
        record = await self._records.find_one("invoice", "stripe_id", invoice_id) if invoice_id else None
        known = record.data if record is not None and isinstance(record.data, Invoice) else None
        status = SETTLES.get(event.type)
        if record is not None and known is not None and status and known.status != status:
            await self._records.upsert("invoice", {"status": status}, "stripe", record_id=record.id, source="stripe")
        notice = NOTICES[event.type].format(**_describe(event, known, self._decimals))
        withdrawn = []
        if status:
            for row in (await self.pending()).get(invoice_id, []):
                if gone := await self._approvals.withdraw(row, "stripe"):
                    withdrawn.append((gone, messages.REMINDER_WITHDRAWN.format(reason=notice)))
        return Changed(withdrawn=withdrawn, notices=[notice])


def _describe(event: StripeEvent, known: Invoice | None, decimals: Callable[[str], int]) -> dict[str, Any]:
    """Who, which invoice and how much, from the event (the record fills what the event leaves out)."""
    data = event.data
    currency = str(data.get("currency") or (known.currency if known else "usd"))
    field_name = {"invoice.paid": "amount_paid", "charge.refunded": "amount_refunded"}.get(event.type, "amount_due")
    minor = data.get(field_name)
    if isinstance(minor, int):
        places = decimals(currency)
        amount = amount_text(float(Decimal(minor).scaleb(-places)), currency, places)
    else:
        amount = amount_text(known.amount, known.currency, decimals(known.currency)) if known else "an amount"
    customer = data.get("customer_name") or (known.customer if known else "") or data.get("customer_email")
    number = data.get("number") or (known.number if known else "") or event.object_id
    return {"customer": customer or "A customer", "number": number, "amount": amount}
