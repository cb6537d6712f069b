"""Invoices through Stripe: the ``invoice.send`` and ``invoice.void`` action kinds.

Sending is five steps: find the customer that has the approved address (or create it), create a
draft invoice that excludes pending items, add the lines, finalize, send. Every POST carries an
``Idempotency-Key`` derived from the approval's key and the step, and each step's result is stored
before the next one. An execution a crash, a timeout or a dropped connection interrupted is completed
from the stored steps (I7). Within 23 h of the draft the remaining steps are replayed with the same
keys: Stripe answers a reused key with the stored response. Stripe may forget a key once it is 24 h
old, so later the invoice is read back first and a step whose effect is there is not repeated (lines
present as approved, finalized, an ``invoice.sent`` event); an invoice in any other state is left
``unknown`` for the operator to check in Stripe, never guessed at (I2). Stripe's 4xx (invalid, 402)
fail the card with Stripe's message; 429/5xx and network errors are retried with the same key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Literal

import stripe
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from connectors import amounts
from connectors.amounts import AmountError, decimals
from connectors.base import (
    Action,
    ActionError,
    ActionKind,
    AmbiguousOutcome,
    CommandSpec,
    ConnectorSpec,
    Context,
    Deps,
    Executed,
    PermanentError,
    Preview,
    Progress,
    TemporaryError,
    ToolSpec,
    parse_field_lines,
)
from connectors.contacts import resolve_person
from connectors.http_outcome import http_outcome
from memory.addresses import normalise_address
from memory.db import utcnow
from memory.records import Contact, Invoice, Record, Records

NOT_CONFIGURED = "Invoicing is not configured: set COO_STRIPE__API_KEY."
INVOICE_USAGE = "Usage: /invoice <customer email or contact name> <amount> | <description>"
EDIT_HELP = (
    "Send the corrected invoice as lines, e.g.\namount=1500\ndescription=Website redesign, phase 2\n"
    "quantity=2\ndue=2026-12-31 (or due_days=30)\ncustomer=ana@example.org"
)
# Stripe keeps an idempotency key at least 24 h; an hour less leaves room for a clock that jumps.
KEYS_KEPT_S = 23 * 3600
# Stripe lists events going back 30 days; a day less leaves room for clocks that disagree.
EVENTS_KEPT_S = 29 * 24 * 3600
# Invoice states in which nothing is owed any more, as a card says them.
SETTLED = {"paid": "already paid", "void": "void", "uncollectible": "written off as uncollectible"}


class StripeSettings(BaseModel):
    """Stripe: a secret or restricted key; the API root (a test server in tests)."""

    api_key: SecretStr | None = None
    api_base_url: str = "https://api.stripe.com"
    timeout_s: float = Field(default=30.0, gt=0)
    due_days: int = Field(default=14, ge=1, le=365)
    events_poll_s: float = Field(default=60.0, gt=0)
    webhook_secret: SecretStr | None = None
    webhook_listen: str = ""

    @field_validator("webhook_secret")
    @classmethod
    def _whsec(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("whsec_"):
            raise ValueError("must be a Stripe webhook signing secret (whsec_...)")
        return value

    @field_validator("webhook_listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, colon, port = value.rpartition(":")
        if value and (not colon or not host or not port.isdigit() or not 0 < int(port) < 65536):
            raise ValueError("must be host:port, e.g. 127.0.0.1:8471")
        return value

    @field_validator("api_base_url")
    @classmethod
    def _root(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("api_key")
    @classmethod
    def _key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("sk_", "rk_")):
            raise ValueError("must be a Stripe secret key (sk_...) or restricted key (rk_...)")
        return value

    @model_validator(mode="after")
    def _webhook_pair(self) -> StripeSettings:
        if bool(self.webhook_secret) != bool(self.webhook_listen):
            raise ValueError("webhook mode needs both COO_STRIPE__WEBHOOK_SECRET and COO_STRIPE__WEBHOOK_LISTEN")
        return self

    @property
    def configured(self) -> bool:
        """True when a key is set."""
        return self.api_key is not None


def minor_units(text: str, currency: str) -> int:
    """``"1,200.50"`` in USD -> 120050, in KWD -> 1200500; ActionError for anything that is not a plain
    positive amount in that currency, or that its conventions leave ambiguous (see ``connectors.amounts``)."""
    try:
        units = amounts.minor_units(text, currency)
    except AmountError as exc:
        raise ActionError(str(exc)) from None
    if decimals(currency) == 3 and units % 10:
        code = currency.upper()
        raise ActionError(f"{code} amounts at Stripe end in 0: write '{text}' with two decimals, e.g. 5.12.")
    return units


def money(amount: int, currency: str) -> str:
    """Minor units as a readable amount: ``1,200.50 EUR``, ``1,200 JPY``, ``1,200.500 KWD``."""
    places = decimals(currency)
    return f"{Decimal(amount).scaleb(-places):,.{places}f} {currency.upper()}"


class InvoiceLine(BaseModel):
    """One line: what, how many, at what unit price (minor units)."""

    model_config = {"frozen": True, "extra": "forbid"}

    description: str = Field(min_length=1, max_length=500)
    quantity: int = Field(default=1, ge=1, le=100_000)
    unit_amount: int = Field(ge=1, le=99_999_999_99)

    @field_validator("description")
    @classmethod
    def _clean(cls, value: str) -> str:
        text = " ".join(value.split())
        if not text:
            raise ValueError("a line needs a description")
        return text

    @property
    def total(self) -> int:
        """quantity x unit amount."""
        return self.quantity * self.unit_amount


class InvoiceAction(Action):
    """One invoice exactly as it will be created and sent."""

    kind: Literal["invoice.send"] = "invoice.send"
    customer_name: str = Field(min_length=1, max_length=200)
    customer_email: str
    contact_id: str | None = None
    currency: str = Field(pattern=r"^[a-z]{3}$")
    lines: tuple[InvoiceLine, ...] = Field(min_length=1, max_length=20)
    due: date

    @field_validator("customer_email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalise_address(value)

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @property
    def total(self) -> int:
        """The sum of the lines, in minor units."""
        return sum(line.total for line in self.lines)

    @model_validator(mode="after")
    def _not_huge(self) -> InvoiceAction:
        if self.total > 99_999_999_99:
            raise ValueError("the total is larger than Stripe accepts")
        return self


class VoidAction(Action):
    """Void one sent invoice (it stays in Stripe, marked void; nothing is owed any more)."""

    kind: Literal["invoice.void"] = "invoice.void"
    invoice_id: str = Field(pattern=r"^in_[A-Za-z0-9]+$")
    number: str
    customer_name: str
    customer_email: str
    currency: str
    total: int


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


class StripeInvoices:
    """What both kinds share: the Stripe client, the records, the currency."""

    def __init__(self, settings: StripeSettings, deps: Deps) -> None:
        self.settings = settings
        self.records = deps.records
        self.currency = deps.currency.lower()
        self._client: stripe.StripeClient | None = None
        self._http: stripe.HTTPXClient | None = None

    def client(self) -> stripe.StripeClient:
        """The Stripe client (made on first use); our own retries, so the SDK makes none."""
        if self.settings.api_key is None:
            raise PermanentError("Stripe is not configured (COO_STRIPE__API_KEY)")
        if self._client is None:
            self._http = stripe.HTTPXClient(timeout=self.settings.timeout_s)
            self._client = stripe.StripeClient(
                self.settings.api_key.get_secret_value(),
                base_addresses={"api": self.settings.api_base_url},
                http_client=self._http,
                max_network_retries=0,
            )
        return self._client

    async def still_owed(self, invoice_id: str) -> str | None:
        """Why a reminder for the invoice must not go out now (paid, void, written off), read from Stripe
        this moment; None while it is still owed. Stripe unreachable: TemporaryError (retried, never sent blind)."""
        try:
            remote = await self.client().v1.invoices.retrieve_async(invoice_id)
        except stripe.StripeError as exc:
            raise _classify(exc) from None
        status = str(remote.status)
        number = remote.number or invoice_id
        if status in SETTLED:
            return f"invoice {number} is {SETTLED[status]} at Stripe"
        if status == "open" and int(remote.amount_remaining or 0) <= 0:
            return f"invoice {number} has nothing left to pay at Stripe"
        return None

    async def close(self) -> None:
        """Close the HTTP client (safe twice)."""
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.close_async()


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

    def __init__(self, shared: StripeInvoices) -> None:
        self._shared = shared
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
        if progress is None:
            progress = Progress({}, _discard)
        client = self._shared.client()
        try:
            customer = progress.get("customer") or await self._customer(client, action, idempotency_key, progress)
            invoice_id = progress.get("invoice")
            at_stripe = None
            if invoice_id and not progress.get("sent") and not _keys_kept(progress):
                # A step without its record may have run at Stripe, and Stripe may have forgotten its key:
                # replaying it could do it twice (I2). What the invoice at Stripe shows decides instead.
                at_stripe = await _at_stripe(client, invoice_id, action, progress)
            invoice_id = invoice_id or await self._draft(client, action, customer, idempotency_key, progress)
            final = await self._complete(client, action, invoice_id, idempotency_key, progress, at_stripe)
        except stripe.StripeError as exc:
            raise _classify(exc) from None
        await self._record(action, invoice_id, final, progress)
        detail = f"Invoice {final['number']}, {money(int(final['total']), action.currency)}, {final['url']}".rstrip(
            ", "
        )
        return Executed(external_id=invoice_id, detail=detail)

    async def _customer(self, client: stripe.StripeClient, action: InvoiceAction, key: str, progress: Progress) -> str:
        records = self._shared.records
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
        at_stripe: _AtStripe | None,
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
                final = _final(done)
            await progress.record("final", final)
        if not progress.get("sent"):
            if at_stripe is None or not at_stripe.sent:
                await client.v1.invoices.send_invoice_async(invoice_id, options={"idempotency_key": f"{key}-send"})
            await progress.record("sent", True)
        return final

    async def _record(self, action: InvoiceAction, invoice_id: str, final: dict[str, Any], progress: Progress) -> None:
        records = self._shared.records
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

    async def reconcile(self) -> list[str]:
        """Read the status of every open invoice from Stripe and record paid / void ones. Returns what changed."""
        records = self._shared.records
        if records is None or not self.configured:
            return []
        changed = []
        for record in await records.all("invoice"):
            invoice = record.data
            if not isinstance(invoice, Invoice) or invoice.status != "sent" or not invoice.stripe_id:
                continue
            try:
                remote = await self._shared.client().v1.invoices.retrieve_async(invoice.stripe_id)
            except stripe.StripeError as exc:
                changed.append(f"invoice {invoice.number}: could not be read ({type(exc).__name__})")
                continue
            status = {"paid": "paid", "void": "void", "uncollectible": "uncollectible"}.get(str(remote.status))
            if status:
                await records.upsert("invoice", {"status": status}, "stripe", record_id=record.id, source="stripe")
                changed.append(f"invoice {invoice.number} ({invoice.customer}): {status}")
        return changed


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

    def __init__(self, shared: StripeInvoices) -> None:
        self._shared = shared
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
        try:
            await self._shared.client().v1.invoices.void_invoice_async(
                action.invoice_id, options={"idempotency_key": f"{idempotency_key}-void"}
            )
        except stripe.StripeError as exc:
            raise _classify(exc) from None
        records = self._shared.records
        if records is not None and (found := await records.find_one("invoice", "stripe_id", action.invoice_id)):
            await records.upsert("invoice", {"status": "void"}, "coo", record_id=found.id, source="stripe")
        return Executed(external_id=action.invoice_id, detail=f"Invoice {action.number} is void.")

    def outcome_line(self, when: str, executed: Executed) -> str:
        return f"Voided {when}. {executed.detail}"


def _keys_kept(progress: Progress) -> bool:
    """True while Stripe still holds every key used on the invoice (it keeps each at least 24 h)."""
    since = progress.get("invoice_at")
    return isinstance(since, int | float) and utcnow().timestamp() - since < KEYS_KEPT_S


@dataclass(frozen=True)
class _AtStripe:
    """What a resumed invoice already has at Stripe: the approved lines, its finalized details, the email."""

    lines: bool
    final: dict[str, Any] | None
    sent: bool


async def _at_stripe(
    client: stripe.StripeClient, invoice_id: str, action: InvoiceAction, progress: Progress
) -> _AtStripe:
    """The steps of a resumed invoice already done at Stripe, read from the invoice itself. An invoice in no
    state this execution could have left it in (other lines, void, less done than recorded) is not guessed
    at: AmbiguousOutcome, for the operator to check in Stripe."""
    remote = await client.v1.invoices.retrieve_async(invoice_id)
    status = str(remote.status)
    lines = await _remote_lines(client, remote)
    if status == "draft" and lines == []:
        found = _AtStripe(lines=False, final=None, sent=False)
    elif lines != _approved_lines(action) or remote.currency != action.currency:
        raise _check_stripe(invoice_id, "its lines at Stripe are not the approved ones")
    elif status == "draft":
        found = _AtStripe(lines=True, final=None, sent=False)
    elif status in ("open", "paid"):
        finalized_at = int(remote.status_transitions.finalized_at or 0)
        found = _AtStripe(lines=True, final=_final(remote), sent=await _was_sent(client, invoice_id, finalized_at))
    else:
        raise _check_stripe(invoice_id, f"it is {status} at Stripe")
    if (progress.get("lines") and not found.lines) or (progress.get("final") and not found.final):
        raise _check_stripe(invoice_id, f"it is {status} at Stripe, short of the steps recorded here")
    return found


async def _remote_lines(client: stripe.StripeClient, remote: stripe.Invoice) -> list[tuple[str, int, int]] | None:
    """The invoice's lines as sorted (description, quantity, amount); None when there are more than fit a page."""
    page: Any = remote.lines
    if page.has_more:  # an invoice embeds only its first lines
        page = await client.v1.invoices.line_items.list_async(str(remote.id), params={"limit": 100})
    if page.has_more:
        return None
    return sorted((line.description or "", int(line.quantity or 0), int(line.amount)) for line in page.data)


def _approved_lines(action: InvoiceAction) -> list[tuple[str, int, int]]:
    return sorted((line.description, line.quantity, line.total) for line in action.lines)


async def _was_sent(client: stripe.StripeClient, invoice_id: str, finalized_at: int) -> bool:
    """True when Stripe recorded an ``invoice.sent`` event for the invoice (an invoice has no "sent" field)."""
    if finalized_at < utcnow().timestamp() - EVENTS_KEPT_S:
        raise _check_stripe(
            invoice_id, "it was finalized too long ago for Stripe's events to tell whether it was emailed"
        )
    try:
        params: Any = {"type": "invoice.sent", "created": {"gte": finalized_at}, "limit": 100}
        events = await client.v1.events.list_async(params=params)
        async for event in events.auto_paging_iter():
            if getattr(event.data.object, "id", None) == invoice_id:
                return True
    except stripe.StripeError as exc:
        if isinstance(_classify(exc), TemporaryError):
            raise
        reason = exc.user_message or str(exc) or type(exc).__name__
        raise _check_stripe(
            invoice_id, f"Stripe's events could not be read to tell whether it was emailed ({reason})"
        ) from None
    return False


def _final(invoice: stripe.Invoice) -> dict[str, Any]:
    """What the done card and the records show of a finalized invoice."""
    return {"number": invoice.number or invoice.id, "url": invoice.hosted_invoice_url or "", "total": invoice.total}


def _check_stripe(invoice_id: str, why: str) -> AmbiguousOutcome:
    return AmbiguousOutcome(f"invoice {invoice_id}: {why}; nothing more was done, check it in Stripe")


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


def _classify(exc: stripe.StripeError) -> Exception:
    """Stripe's answer as our outcome: 4xx permanent (with Stripe's message); 429, 5xx, network: retry the key."""
    message = exc.user_message or str(exc) or type(exc).__name__
    if isinstance(exc, stripe.IdempotencyError):
        return AmbiguousOutcome(f"Stripe refused a repeated key ({message})")
    if isinstance(exc, stripe.RateLimitError | stripe.APIConnectionError):
        return TemporaryError(f"Stripe: {message}")
    return http_outcome(exc.http_status, "Stripe", message) or TemporaryError(f"Stripe answered: {message}")


async def _discard(_: dict[str, Any]) -> None:
    return None


def connector(settings: StripeSettings, deps: Deps) -> list[ActionKind[Any]]:
    """The kinds this connector declares."""
    shared = StripeInvoices(settings, deps)
    deps.preconditions.add("invoice", shared.still_owed)
    return [InvoiceSend(shared), InvoiceVoid(shared)]


CONNECTOR = ConnectorSpec("stripe", StripeSettings, connector)
