"""Stripe's amounts: the operator's text read as minor units under Stripe's rules, and minor units shown
with their currency. The reading conventions themselves are in :mod:`connectors.amounts`."""

from __future__ import annotations

from decimal import Decimal

from connectors import amounts
from connectors.amounts import AmountError, decimals
from connectors.base import ActionError


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
