"""Invoices through Stripe: the ``invoice.send`` and ``invoice.void`` action kinds, as the operator meets them
(the ``/invoice`` command, the send_invoice tool, the card, its edits, the Void button).

What they do at Stripe is in the modules around this one: the approved values in
:mod:`connectors.stripe_invoice_actions`, every POST with its idempotency key in
:mod:`connectors.stripe_idempotent_calls`, a resumed invoice read back in :mod:`connectors.stripe_resume`, the
client and what Stripe's errors mean in :mod:`connectors.stripe_account`, amounts in
:mod:`connectors.stripe_money`, the settings in :mod:`connectors.stripe_settings`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any, ClassVar

import stripe
from pydantic import BaseModel, Field, field_validator

from connectors.base import (
    Action,
    ActionError,
    ActionKind,
    CommandSpec,
    ConnectorSpec,
    Context,
    Deps,
    Executed,
    Preview,
    Progress,
    ToolSpec,
    parse_field_lines,
)
from connectors.contacts import resolve_person
from connectors.stripe_account import StripeAccount
from connectors.stripe_idempotent_calls import InvoiceCalls
from connectors.stripe_invoice_actions import InvoiceAction, VoidAction
from connectors.stripe_money import minor_units, money
from connectors.stripe_settings import StripeSettings

NOT_CONFIGURED = "Invoicing is not configured: set COO_STRIPE__API_KEY."
INVOICE_USAGE = "Usage: /invoice <customer email or contact name> <amount> | <description>"
EDIT_HELP = (
    "Send the corrected invoice as lines, e.g.\namount=1500\ndescription=Website redesign, phase 2\n"
    "quantity=2\ndue=2026-12-31 (or due_days=30)\ncustomer=ana@example.org"
)


class ProposedLine(BaseModel):
    """One line of the send_invoice tool: its fields are in the schema the model sees, and a bad line is refused
    as ``lines.N.field: problem``. The amount stays text here: it is read in the operator's currency by
    :mod:`connectors.amounts` when the invoice is built."""

    description: str = Field(min_length=1, max_length=500, description="what is billed")
    quantity: int = Field(default=1, ge=1, le=100_000, description="how many (default 1)")
    unit_amount: str = Field(
        min_length=1,
        max_length=40,
        description='the price of one, in the operator\'s currency, e.g. "1200.50": a dot for decimals, '
        "no thousands separator",
    )

    @field_validator("unit_amount", mode="before")
    @classmethod
    def _number_as_text(cls, value: Any) -> Any:
        # Models often send 1200 or 15.5 as JSON numbers; they are read by the same conventions as text.
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


class ProposeInvoiceArgs(BaseModel):
    """Arguments of the send_invoice tool."""

    customer: str = Field(min_length=1, description="the customer's email, or the name of a contact")
    lines: list[ProposedLine] = Field(min_length=1, max_length=20, description="the invoice's lines")
    due_days: int | None = Field(default=None, ge=1, le=365, description="days until due (default 14)")


class InvoiceSend(ActionKind[InvoiceAction]):
    """``invoice.send``: create, finalize and send one invoice to a customer."""

    name = "invoice.send"
    title = "Send this invoice?"
    args = InvoiceAction
    tool: ToolSpec | None = ToolSpec(
        "send_invoice",
        "Propose an invoice to a customer. The operator sees the customer, every line, the total and the "
        "due date on a card and must approve it before anything reaches Stripe's customer side.",
        ProposeInvoiceArgs,
    )
    command: ClassVar[CommandSpec | None] = CommandSpec(
        "invoice", "Bill a customer: /invoice <customer> <amount> | <description>", INVOICE_USAGE
    )
    edit_help = EDIT_HELP
    resumable = True
    compensation = "invoice.void"
    compensation_label = "Void"
    done_verb = "Sent"
    activity = "sending invoices"

    def __init__(self, shared: StripeAccount, calls: InvoiceCalls) -> None:
        self._shared = shared
        self._calls = calls
        self.configured = shared.settings.configured

    def preview(self, action: InvoiceAction) -> Preview:
        cur = action.currency
        lines = [
            f"- {line.description}: {line.quantity} × {money(line.unit_amount, cur)} = {money(line.total, cur)}"
            for line in action.lines
        ]
        fields = (("Customer", f"{action.customer_name} <{action.customer_email}>"), ("Due", action.due.isoformat()))
        return Preview(self.title, fields, "\n".join([*lines, f"Total: {money(action.total, cur)}"]))

    def summary(self, action: InvoiceAction) -> str:
        return f"invoice to {action.customer_name}: {money(action.total, action.currency)}"

    def targets(self, action: InvoiceAction) -> tuple[str, ...]:
        return (action.customer_email,)

    async def from_command(self, text: str, ctx: Context) -> InvoiceAction:
        """``ana@x.org 1200 | Website redesign`` or ``Ana Silva 1200.50 | Website``."""
        if not self.configured:
            raise ActionError(NOT_CONFIGURED)
        head, bar, description = text.partition("|")
        words = head.split()
        if not bar or len(words) < 2 or not description.strip():
            raise ActionError(INVOICE_USAGE)
        person = await resolve_person(" ".join(words[:-1]), ctx.records)
        amount = minor_units(words[-1], ctx.currency)
        line = {"description": description.strip(), "quantity": 1, "unit_amount": amount}
        return self._build(person.name, person.email, person.contact_id, [line], ctx, None)

    async def from_tool(self, args: BaseModel, ctx: Context) -> InvoiceAction:
        assert isinstance(args, ProposeInvoiceArgs)
        person = await resolve_person(args.customer, ctx.records)
        lines = []
        for index, item in enumerate(args.lines):
            try:
                unit = minor_units(item.unit_amount, ctx.currency)
            except ActionError as exc:
                raise ActionError(f"lines.{index}.unit_amount ({item.description!r}): {exc}") from None
            lines.append({"description": item.description, "quantity": item.quantity, "unit_amount": unit})
        return self._build(person.name, person.email, person.contact_id, lines, ctx, args.due_days)

    def _build(
        self,
        name: str,
        email: str,
        contact_id: str | None,
        lines: list[dict[str, Any]],
        ctx: Context,
        due_days: int | None,
    ) -> InvoiceAction:
        if not self.configured:
            raise ActionError(NOT_CONFIGURED)
        due = ctx.today + timedelta(days=due_days or self._shared.settings.due_days)
        fields = {
            "customer_name": name,
            "customer_email": email,
            "contact_id": contact_id,
            "currency": ctx.currency,
            "lines": lines,
            "due": due,
        }
        return self.build(fields)

    async def edit(self, action: InvoiceAction, text: str, ctx: Context) -> InvoiceAction:
        """``amount=``, ``description=``, ``quantity=`` (the first line), ``due=``/``due_days=``, ``customer=``."""
        names = ("amount", "description", "quantity", "due", "due_days", "customer")
        try:
            changes = parse_field_lines(text, names)
        except ActionError as exc:
            raise ActionError(f"{exc} {EDIT_HELP}") from None
        first = action.lines[0].model_dump()
        if "amount" in changes:
            first["unit_amount"] = minor_units(changes["amount"], action.currency)
        if "description" in changes:
            first["description"] = changes["description"]
        if "quantity" in changes:
            if not changes["quantity"].isdigit():
                raise ActionError(f"quantity must be a whole number, not {changes['quantity']!r}")
            first["quantity"] = int(changes["quantity"])
        fields = action.model_dump(exclude={"kind"})
        fields["lines"] = [first, *[line.model_dump() for line in action.lines[1:]]]
        if "due" in changes:
            try:
                fields["due"] = date.fromisoformat(changes["due"])
            except ValueError:
                raise ActionError(f"due must be a date like 2026-12-31, not {changes['due']!r}") from None
        if "due_days" in changes:
            if not changes["due_days"].isdigit():
                raise ActionError(f"due_days must be a whole number, not {changes['due_days']!r}")
            fields["due"] = ctx.today + timedelta(days=int(changes["due_days"]))
        if "customer" in changes:
            person = await resolve_person(changes["customer"], ctx.records)
            fields.update(customer_name=person.name, customer_email=person.email, contact_id=person.contact_id)
        if fields["due"] <= ctx.today:
            raise ActionError("The due date must be after today.")
        return self.build(fields)

    def outcome_line(self, when: str, executed: Executed) -> str:
        return f"Sent {when}. {executed.detail}"

    def compensate(self, action: InvoiceAction, executed: Executed) -> Action | None:
        number = executed.detail.split(",", 1)[0].removeprefix("Invoice ").strip() or executed.external_id
        return VoidAction(
            invoice_id=executed.external_id,
            number=number,
            customer_name=action.customer_name,
            customer_email=action.customer_email,
            currency=action.currency,
            total=action.total,
        )

    def secrets(self) -> Sequence[str]:
        settings = self._shared.settings
        return [s.get_secret_value() for s in (settings.api_key, settings.webhook_secret) if s is not None]

    async def close(self) -> None:
        await self._shared.close()

    async def check(self) -> tuple[bool | None, str]:
        """Reads the account balance with the key (changes nothing)."""
        if not self.configured:
            return None, "not configured; set COO_STRIPE__API_KEY"
        try:
            await self._shared.client().v1.balance.retrieve_async()
        except stripe.AuthenticationError:
            return False, "the key was rejected"
        except stripe.StripeError as exc:
            return False, f"unreachable or refused ({type(exc).__name__})"
        return True, f"key accepted at {self._shared.settings.api_base_url}"

    async def execute(self, action: InvoiceAction, idempotency_key: str, progress: Progress | None = None) -> Executed:
        return await self._calls.send(action, idempotency_key, progress)

    async def reconcile(self) -> list[str]:
        """Read the status of every open invoice from Stripe and record paid / void ones. Returns what changed."""
        return await self._shared.reconcile()


class InvoiceVoid(ActionKind[VoidAction]):
    """``invoice.void``: void a sent invoice (proposed by the Void button on its card)."""

    name = "invoice.void"
    title = "Void this invoice?"
    args = VoidAction
    resumable = True
    done_verb = "Voided"
    working = "Voiding…"
    nothing_done = "Nothing was voided."
    activity = "voiding invoices"

    def __init__(self, shared: StripeAccount, calls: InvoiceCalls) -> None:
        self._calls = calls
        self.configured = shared.settings.configured

    def preview(self, action: VoidAction) -> Preview:
        fields = (
            ("Invoice", f"{action.number} ({action.invoice_id})"),
            ("Customer", f"{action.customer_name} <{action.customer_email}>"),
            ("Total", money(action.total, action.currency)),
        )
        return Preview(self.title, fields, "The customer is told the invoice is void; nothing is owed on it any more.")

    def summary(self, action: VoidAction) -> str:
        return f"void of invoice {action.number} ({action.customer_name})"

    async def execute(self, action: VoidAction, idempotency_key: str, progress: Progress | None = None) -> Executed:
        return await self._calls.void(action, idempotency_key)

    def outcome_line(self, when: str, executed: Executed) -> str:
        return f"Voided {when}. {executed.detail}"


def connector(settings: StripeSettings, deps: Deps) -> list[ActionKind[Any]]:
    """The kinds this connector declares."""
    shared = StripeAccount(settings, deps)
    calls = InvoiceCalls(shared)
    deps.preconditions.add("invoice", shared.still_owed)
    return [InvoiceSend(shared, calls), InvoiceVoid(shared, calls)]


CONNECTOR = ConnectorSpec("stripe", StripeSettings, connector)
