"""The Stripe account both invoice kinds use: the client (made on first use, no SDK retries), the reads that
change nothing at Stripe (is an invoice still owed, which open invoices got paid), and what Stripe's errors
mean for an action (:func:`outcome_of`: done, retry with the same key, fail, or unknown)."""

from __future__ import annotations

from typing import Any

import stripe

from connectors.base import AmbiguousOutcome, Deps, PermanentError, TemporaryError
from connectors.http_outcome import http_outcome
from connectors.stripe_settings import StripeSettings
from memory.records import Invoice

# Invoice states in which nothing is owed any more, as a card says them.
SETTLED = {"paid": "already paid", "void": "void", "uncollectible": "written off as uncollectible"}


class StripeAccount:
    """What both invoice kinds share: the Stripe client, the records, the currency."""

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
            self._http, self._client = new_client(self.settings)
        return self._client

    async def still_owed(self, invoice_id: str) -> str | None:
        """Why a reminder for the invoice must not go out now (paid, void, written off), read from Stripe
        this moment; None while it is still owed. Stripe unreachable: TemporaryError (retried, never sent blind)."""
        try:
            remote = await self.client().v1.invoices.retrieve_async(invoice_id)
        except stripe.StripeError as exc:
            raise outcome_of(exc) from None
        status = str(remote.status)
        number = remote.number or invoice_id
        if status in SETTLED:
            return f"invoice {number} is {SETTLED[status]} at Stripe"
        if status == "open" and int(remote.amount_remaining or 0) <= 0:
            return f"invoice {number} has nothing left to pay at Stripe"
        return None

    async def reconcile(self) -> list[str]:
        """Read the status of every open invoice from Stripe and record paid / void ones. Returns what changed."""
        records = self.records
        if records is None or not self.settings.configured:
            return []
        changed = []
        for record in await records.all("invoice"):
            invoice = record.data
            if not isinstance(invoice, Invoice) or invoice.status != "sent" or not invoice.stripe_id:
                continue
            try:
                remote = await self.client().v1.invoices.retrieve_async(invoice.stripe_id)
            except stripe.StripeError as exc:
                changed.append(f"invoice {invoice.number}: could not be read ({type(exc).__name__})")
                continue
            status = {"paid": "paid", "void": "void", "uncollectible": "uncollectible"}.get(str(remote.status))
            if status:
                await records.upsert("invoice", {"status": status}, "stripe", record_id=record.id, source="stripe")
                changed.append(f"invoice {invoice.number} ({invoice.customer}): {status}")
        return changed

    async def close(self) -> None:
        """Close the HTTP client (safe twice)."""
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.close_async()


def new_client(settings: StripeSettings) -> tuple[stripe.HTTPXClient, stripe.StripeClient]:
    """An HTTP client (the caller closes it) and a Stripe client on it, for the configured key and API root.
    Every retry is ours (with the same idempotency key), so the SDK makes none."""
    assert settings.api_key is not None, "a Stripe client needs COO_STRIPE__API_KEY"
    http = stripe.HTTPXClient(timeout=settings.timeout_s)
    client = stripe.StripeClient(
        settings.api_key.get_secret_value(),
        base_addresses={"api": settings.api_base_url},
        http_client=http,
        max_network_retries=0,
    )
    return http, client


def final_details(invoice: stripe.Invoice) -> dict[str, Any]:
    """What the done card and the records show of a finalized invoice."""
    return {"number": invoice.number or invoice.id, "url": invoice.hosted_invoice_url or "", "total": invoice.total}


def outcome_of(exc: stripe.StripeError) -> Exception:
    """Stripe's answer as our outcome: 4xx permanent (with Stripe's message); 429, 5xx, network: retry the key."""
    message = exc.user_message or str(exc) or type(exc).__name__
    if isinstance(exc, stripe.IdempotencyError):
        return AmbiguousOutcome(f"Stripe refused a repeated key ({message})")
    if isinstance(exc, stripe.RateLimitError | stripe.APIConnectionError):
        return TemporaryError(f"Stripe: {message}")
    return http_outcome(exc.http_status, "Stripe", message) or TemporaryError(f"Stripe answered: {message}")
