"""Amounts read by the conventions of the operator's currency: one reading or a clear refusal, never a guess
that bills 1000 times too little or too much."""

from __future__ import annotations

import pytest

from connectors.amounts import AmountError, minor_units


@pytest.mark.parametrize(
    ("text", "currency", "units"),
    [
        # USD: the dot is the decimal mark, the comma only separates thousands.
        ("1,200", "usd", 120000),
        ("1,200.00", "usd", 120000),
        ("1,200.5", "usd", 120050),
        ("1,234,567.89", "usd", 123456789),
        ("1200", "usd", 120000),
        ("12.50", "usd", 1250),
        (" 99 ", "usd", 9900),
        # EUR: both habits are read when only one reading is possible.
        ("1.200,50", "eur", 120050),
        ("1,200.50", "eur", 120050),
        ("12,50", "eur", 1250),
        ("12.50", "eur", 1250),
        ("1.234.567,8", "eur", 123456780),
        ("1200", "eur", 120000),
        # JPY has no decimals: a comma separates thousands.
        ("1,200", "jpy", 1200),
        ("1,200,000", "jpy", 1200000),
        # KWD has three decimals and dot conventions.
        ("1,200", "kwd", 1200000),
        ("1.200", "kwd", 1200),
        ("1,200.500", "kwd", 1200500),
    ],
)
def test_one_reading_is_taken(text: str, currency: str, units: int) -> None:
    assert minor_units(text, currency) == units


@pytest.mark.parametrize(
    ("text", "currency", "message"),
    [
        # A decimal comma is never guessed in USD (or JPY, KWD).
        ("12,50", "usd", "'12,50' is ambiguous: in USD the decimal mark is a dot .* Write 12.50 if"),
        ("1.200,50", "usd", "'1.200,50' is ambiguous: in USD the decimal mark is a dot .* Write 1200.50 if"),
        ("1,2", "usd", "ambiguous: in USD the decimal mark is a dot"),
        ("1200,5", "kwd", "ambiguous: in KWD the decimal mark is a dot"),
        ("1.200", "usd", "USD has 2 decimals: '1.200' has 3"),
        ("1.200", "jpy", "JPY has no cents"),
        # EUR: a separator before three digits could be either.
        ("1,200", "eur", r"'1,200' is ambiguous in EUR: 1200 or 1.200\? Write it without a thousands separator"),
        ("1.200", "eur", r"'1.200' is ambiguous in EUR: 1200 or 1.200\?"),
        # Malformed groups and shapes.
        ("1,20,0", "usd", "is not an amount"),
        ("12,00,000", "usd", "is not an amount"),
        ("1234,567", "usd", "is not an amount"),
        ("1.2.3", "eur", "is not an amount"),
        ("1,200.", "usd", "is not an amount"),
        (",5", "usd", "is not an amount"),
        ("1e3", "usd", "is not an amount"),
        ("-5", "usd", "is not an amount"),
        ("$5", "usd", "is not an amount"),
        ("", "usd", "is not an amount"),
        ("5.1234", "kwd", "is not an amount"),
        ("1,234,567,890", "usd", "is not an amount"),
    ],
)
def test_anything_ambiguous_or_malformed_is_refused_with_one_line(text: str, currency: str, message: str) -> None:
    with pytest.raises(AmountError, match=message) as refused:
        minor_units(text, currency)
    assert "\n" not in str(refused.value)
