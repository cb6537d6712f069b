"""Receivables aging for the digest: open invoices by days overdue, with totals per currency."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date

from graph.receivables.cadence import amount_text
from memory.records import Invoice
from prompts import messages

LIMITS = (0, 30, 60)  # current (not yet due), 1–30, 31–60, over 60 days overdue


def bucket(due: date | None, today: date) -> int:
    """The aging bucket (0..3) of an invoice due on ``due``."""
    late = (today - due).days if due else 0
    return sum(late > limit for limit in LIMITS)


def aging_lines(invoices: Iterable[Invoice], today: date, decimals: Callable[[str], int]) -> list[str]:
    """One line per bucket that holds money, each total per currency (``decimals``: a currency's decimal
    places); nothing when nothing is owed."""
    totals: list[dict[str, float]] = [defaultdict(float) for _ in range(len(LIMITS) + 1)]
    counts = [0] * len(totals)
    for invoice in invoices:
        if invoice.status != "sent":
            continue
        index = bucket(invoice.due, today)
        totals[index][invoice.currency.upper()] += invoice.amount
        counts[index] += 1
    if not any(counts):
        return []
    lines = [messages.RECEIVABLES_HEAD]
    for name, count, total in zip(messages.RECEIVABLES_BUCKETS, counts, totals, strict=True):
        if count:
            money = ", ".join(amount_text(value, code, decimals(code)) for code, value in sorted(total.items()))
            lines.append(f"- {name}: {money} ({messages.plural(count, 'invoice')})")
    everything: dict[str, float] = defaultdict(float)
    for total in totals:
        for code, value in total.items():
            everything[code] += value
    lines.append("- total: " + ", ".join(amount_text(v, c, decimals(c)) for c, v in sorted(everything.items())))
    return lines
