"""I5: a price table never takes a price that would credit the ledger or defeat a cap."""

from __future__ import annotations

import math

import pytest

from graph.spend.pricing import PriceTable


@pytest.mark.parametrize(
    ("overrides", "rate"),
    [
        ({"m": (-1.0, 2.0)}, 1.0),
        ({"m": (1.0, math.nan)}, 1.0),
        ({"m": (math.inf, 1.0)}, 1.0),
        ({}, math.inf),
        ({}, math.nan),
        ({}, 0.0),
    ],
)
def test_a_negative_or_non_finite_price_or_rate_is_refused(
    overrides: dict[str, tuple[float, float]], rate: float
) -> None:
    with pytest.raises(ValueError):
        PriceTable(overrides, usd_rate=rate)
