"""A resumed invoice read back at Stripe. Stripe keeps an idempotency key at least 24 h: within 23 h of the
draft a step is simply replayed with its key. Later, a step recorded here or not may have run at Stripe, so
what the invoice at Stripe shows (its lines, its state, an ``invoice.sent`` event) says which steps are done;
an invoice in a state this execution could not have left it in is left to the operator (AmbiguousOutcome)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe

from connectors.base import AmbiguousOutcome, Progress, TemporaryError
from connectors.stripe_account import final_details, outcome_of
from connectors.stripe_invoice_actions import InvoiceAction
from memory.db import utcnow

# Stripe keeps an idempotency key at least 24 h; an hour less leaves room for a clock that jumps.
KEYS_KEPT_S = 23 * 3600
# Stripe lists events going back 30 days; a day less leaves room for clocks that disagree.
EVENTS_KEPT_S = 29 * 24 * 3600


def keys_kept(progress: Progress) -> bool:
    """True while Stripe still holds every key used on the invoice (it keeps each at least 24 h)."""
    since = progress.get("invoice_at")
    return isinstance(since, int | float) and utcnow().timestamp() - since < KEYS_KEPT_S


@dataclass(frozen=True)
class AtStripe:
    """What a resumed invoice already has at Stripe: the approved lines, its finalized details, the email."""

    lines: bool
    final: dict[str, Any] | None
    sent: bool


async def read_back(
    client: stripe.StripeClient, invoice_id: str, action: InvoiceAction, progress: Progress
) -> AtStripe:
    """The steps of a resumed invoice already done at Stripe, read from the invoice itself. An invoice in no
    state this execution could have left it in (other lines, void, less done than recorded) is not guessed
    at: AmbiguousOutcome, for the operator to check in Stripe."""
    remote = await client.v1.invoices.retrieve_async(invoice_id)
    status = str(remote.status)
    lines = await _remote_lines(client, remote)
    if status == "draft" and lines == []:
        found = AtStripe(lines=False, final=None, sent=False)
    elif lines != _approved_lines(action) or remote.currency != action.currency:
        raise _check_stripe(invoice_id, "its lines at Stripe are not the approved ones")
    elif status == "draft":
        found = AtStripe(lines=True, final=None, sent=False)
    elif status in ("open", "paid"):
        finalized_at = int(remote.status_transitions.finalized_at or 0)
        found = AtStripe(
            lines=True, final=final_details(remote), sent=await _was_sent(client, invoice_id, finalized_at)
        )
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
        if isinstance(outcome_of(exc), TemporaryError):
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
