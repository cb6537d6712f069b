"""Which reminder an open invoice is due for, what it is called, and what it says (pure functions)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import date, timedelta

from memory.records import Invoice
from prompts import load_prompt

# Days overdue from which a reminder turns firm.
FIRM_AFTER_DAYS = 7
# What the operator's wording may name; any other brace is kept as written.
_PLACEHOLDER = re.compile(r"\{(customer|number|amount|due|days|url)\}")
DEFAULT_OPENING = "Hi {customer},"


def due_offset(due: date, since: date, today: date, cadence: Sequence[int]) -> int | None:
    """The latest offset of ``cadence`` whose day has come (at or before ``today``) and was not before the
    invoice existed (``since``); None when there is none. Only the latest counts: a machine asleep through
    several offsets proposes one reminder when it wakes, not one per day it missed."""
    latest = None
    for offset in sorted(cadence):
        day = due + timedelta(days=offset)
        if since <= day <= today:
            latest = offset
    return latest


def reminder_id(stripe_id: str, offset: int) -> str:
    """The approval id of one invoice's reminder at one offset: proposing it again finds it (I7)."""
    return "rm" + hashlib.sha256(f"reminder:{stripe_id}:{offset}".encode()).hexdigest()[:14]


def amount_text(amount: float, currency: str, places: int) -> str:
    """``1,200.00 USD``, ``1,200 JPY``: with the currency's ``places`` decimals."""
    return f"{amount:,.{places}f} {currency.upper()}"


def fill_wording(wording: str, values: Mapping[str, object]) -> str:
    """The operator's wording with its placeholders (``{customer}``, ``{number}``, ``{amount}``, ``{due}``,
    ``{days}``, ``{url}``) filled; nothing else in it is read as a template."""
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), wording)


def reminder_email(invoice: Invoice, today: date, places: int, wording: str = "") -> tuple[str, str]:
    """(subject, body) of the reminder for ``invoice`` on ``today`` (amount with ``places`` decimals): firmer
    as it ages. ``wording`` (the operator's, from /profile) opens the email in place of the greeting; the
    facts and the tone of the invoice's age follow it either way."""
    assert invoice.due is not None
    late = (today - invoice.due).days
    name = "before" if late < 0 else "due" if late == 0 else "late" if late <= FIRM_AFTER_DAYS else "firm"
    values = {
        "customer": invoice.customer or "there",
        "number": invoice.number,
        "amount": amount_text(invoice.amount, invoice.currency, places),
        "due": invoice.due.isoformat(),
        "days": late,
        "url": invoice.url,
    }
    opening = fill_wording(wording.strip() or DEFAULT_OPENING, values)
    text = load_prompt(f"reminder_{name}").format(opening=opening, **values)
    head, _, body = text.partition("\n\n")
    return head.removeprefix("Subject:").strip(), body.strip()
