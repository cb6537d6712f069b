"""Amounts written by people and models, read by the conventions of the operator's currency.

``1,200`` is twelve hundred in USD and ambiguous in EUR; a card that bills a thousandth of what was
meant is worse than a refusal, so an amount is read only when one reading is possible:

- In most currencies (USD, GBP, JPY, KWD, ...) the decimal mark is a dot and a comma only separates
  thousands: ``1,200`` is 1200, ``1,200.50`` is 1200.50, and ``12,50`` or ``1.200,50`` are refused
  (a decimal comma is never guessed).
- In currencies where the decimal comma is common (EUR, BRL, SEK, ...) both marks are read, and an
  amount that means different things under the two (``1,200``, ``1.200``, ``5.125``) is refused;
  ``1.200,50``, ``1,200.50``, ``12,50`` and ``12.50`` have one reading and are taken.
- Thousands separators must sit between groups of three digits. No more decimals than the currency has
  (0 in JPY, 3 in KWD, 2 in most), so ``1.200`` is refused in USD rather than read as 1.20.
"""

from __future__ import annotations

import re
from decimal import Decimal

from memory.errors import InternalError

# Currencies without minor units (Stripe's list): amounts are whole numbers.
ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
# Stripe counts these in thousandths, and takes only amounts whose last digit is 0 (its currencies page).
THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())
# Where a decimal comma is the local habit; amounts in these are read both ways and must agree.
COMMA_DECIMAL = frozenset(
    "eur brl ars clp cop pyg uyu bob ves dkk nok sek isk pln czk huf ron bgn rsd mkd bam all "
    "try rub uah byn kzt gel azn amd mdl idr vnd zar".split()
)
_SHAPE = re.compile(r"^\d[\d.,]*$")
_MAX_WHOLE_DIGITS = 9
_MAX_FRACTION_DIGITS = 3


class AmountError(InternalError, ValueError):
    """An amount that cannot be read with certainty; the message is one line for the operator."""


def decimals(currency: str) -> int:
    """How many decimals ``currency``'s minor units have: 0 (JPY), 3 (KWD) or 2."""
    code = currency.lower()
    return 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2


def _reading(text: str, mark: str, group: str) -> Decimal | None:
    """``text`` read with ``mark`` as the decimal mark and ``group`` between thousands, or None."""
    whole, sep, fraction = text.partition(mark)
    if sep and (not fraction or not fraction.isdigit() or len(fraction) > _MAX_FRACTION_DIGITS):
        return None
    groups = whole.split(group)
    if not groups[0].isdigit() or not all(len(g) == 3 and g.isdigit() for g in groups[1:]):
        return None
    if len(groups) > 1 and len(groups[0]) > 3:
        return None
    digits = "".join(groups)
    if len(digits.lstrip("0")) > _MAX_WHOLE_DIGITS:
        return None
    return Decimal(f"{digits}.{fraction}" if sep else digits)


def _plain(value: Decimal) -> str:
    """``Decimal('1200.50')`` -> ``1200.50``: no thousands separator, as the operator may write it."""
    return f"{value:f}"


def parse_amount(text: str, currency: str) -> Decimal:
    """``text`` as a positive amount of ``currency`` (see the module's rules); AmountError otherwise."""
    raw = text.strip()
    code = currency.upper()
    plain = f"'{raw}' is not an amount (write it like 1200 or 1200.50)."
    if not _SHAPE.match(raw):
        raise AmountError(plain)
    dot = _reading(raw, ".", ",")
    comma = _reading(raw, ",", ".")
    if currency.lower() in COMMA_DECIMAL:
        readings = {r for r in (dot, comma) if r is not None}
        if len(readings) > 1:
            low, high = sorted(readings)
            raise AmountError(
                f"'{raw}' is ambiguous in {code}: {_plain(high)} or {_plain(low)}? "
                "Write it without a thousands separator."
            )
        value = next(iter(readings), None)
    else:
        value = dot
        if value is None and comma is not None and _places(comma) <= decimals(currency):
            raise AmountError(
                f"'{raw}' is ambiguous: in {code} the decimal mark is a dot and a comma only separates "
                f"thousands. Write {_plain(comma)} if that is what you mean."
            )
    if value is None:
        raise AmountError(plain)
    _check_places(raw, value, currency)
    return value


def _places(value: Decimal) -> int:
    """How many decimals ``value`` was written with (``1.20`` -> 2)."""
    return -int(value.as_tuple().exponent)


def _check_places(raw: str, value: Decimal, currency: str) -> None:
    code, places, written = currency.upper(), decimals(currency), _places(value)
    if written <= places:
        return
    if not places:
        raise AmountError(f"{code} has no cents: write a whole amount.")
    raise AmountError(f"{code} has {places} decimals: '{raw}' has {written}.")


def minor_units(text: str, currency: str) -> int:
    """``"1200.50"`` in USD -> 120050, ``"1,200"`` in USD -> 120000, ``"5.12"`` in KWD -> 5120."""
    return int(parse_amount(text, currency).scaleb(decimals(currency)))
