"""The cadence and aging rules of the receivables loop (pure functions) and their settings."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pydantic import ValidationError

from connectors.amounts import decimals
from graph.receivables.aging import aging_lines
from graph.receivables.cadence import due_offset, reminder_email, reminder_id
from graph.receivables.settings import ReceivablesSettings
from memory.records import Invoice

DUE = date(2026, 12, 20)
CADENCE = [-3, 0, 3, 7, 14]


def invoice(due: date = DUE, amount: float = 1200, currency: str = "USD", status: str = "sent") -> Invoice:
    return Invoice(
        number="INV-0003",
        amount=amount,
        currency=currency,
        due=due,
        status=status,  # type: ignore[arg-type]
        stripe_id="in_1",
        url="https://pay.example/i/1",
        customer="Acme",
    )


@pytest.mark.parametrize(
    ("today", "expected"),
    [(-4, None), (-3, -3), (-1, -3), (0, 0), (2, 0), (3, 3), (13, 7), (14, 14), (400, 14)],
)
def test_the_latest_offset_whose_day_has_come_is_due(today: int, expected: int | None) -> None:
    sent = DUE - timedelta(days=30)
    assert due_offset(DUE, sent, DUE + timedelta(days=today), CADENCE) == expected


def test_an_invoice_sent_after_an_offset_day_skips_it() -> None:
    sent = DUE - timedelta(days=1)  # the -3 reminder's day was before the invoice existed
    assert due_offset(DUE, sent, DUE - timedelta(days=1), CADENCE) is None
    assert due_offset(DUE, sent, DUE, CADENCE) == 0


def test_reminder_ids_are_stable_and_distinct() -> None:
    assert reminder_id("in_1", 3) == reminder_id("in_1", 3)
    assert len({reminder_id("in_1", 3), reminder_id("in_1", 7), reminder_id("in_2", 3)}) == 3


@pytest.mark.parametrize(
    ("days", "subject"),
    [
        (-3, "Reminder: invoice INV-0003 is due on 2026-12-20"),
        (0, "Invoice INV-0003 is due today"),
        (3, "Invoice INV-0003 is 3 days overdue"),
        (14, "Overdue: invoice INV-0003, 14 days past due"),
    ],
)
def test_the_tone_firms_up_as_the_invoice_ages(days: int, subject: str) -> None:
    got_subject, body = reminder_email(invoice(), DUE + timedelta(days=days), 2)
    assert got_subject == subject
    assert "1,200.00 USD" in body and "https://pay.example/i/1" in body and body.startswith("Hi Acme,")


def test_amounts_keep_their_currencys_decimals() -> None:
    _, body = reminder_email(invoice(amount=120000, currency="JPY"), DUE, decimals("JPY"))
    assert "120,000 JPY" in body


def test_aging_buckets_with_totals_per_currency() -> None:
    today = DUE
    open_ = [
        invoice(due=today + timedelta(days=5)),
        invoice(due=today - timedelta(days=1), amount=100),
        invoice(due=today - timedelta(days=30), amount=50, currency="EUR"),
        invoice(due=today - timedelta(days=31), amount=10),
        invoice(due=today - timedelta(days=61), amount=5),
        invoice(due=today - timedelta(days=90), status="paid"),
    ]
    assert aging_lines(open_, today, decimals) == [
        "Receivables (open invoices by days overdue):",
        "- current: 1,200.00 USD (1 invoice)",
        "- 1–30 days: 50.00 EUR, 100.00 USD (2 invoices)",
        "- 31–60 days: 10.00 USD (1 invoice)",
        "- over 60 days: 5.00 USD (1 invoice)",
        "- total: 50.00 EUR, 1,315.00 USD",
    ]
    assert aging_lines([invoice(status="paid")], today, decimals) == []


@pytest.mark.parametrize("bad", [[-61], [400], ["x"]])
def test_a_bad_cadence_is_refused(bad: list[object]) -> None:
    with pytest.raises(ValidationError):
        ReceivablesSettings(cadence=bad)  # type: ignore[arg-type]


def test_the_cadence_is_sorted_and_deduplicated() -> None:
    assert ReceivablesSettings(cadence=[7, -3, 7, 0]).cadence == [-3, 0, 7]
