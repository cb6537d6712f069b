"""Model prices and cost arithmetic. Prices are per million tokens, in the operator's currency.

A model is priced by its name, whatever the endpoint it is reached through (a gateway on a private
address serves the same paid models): first the operator's overrides, then the maintained table of
``genai-prices``. A model is free only when the operator says so (``COO_LLM__FREE``); an unknown
model is priced high, never at 0, so that budgets hold (I5).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# What a model nobody priced is assumed to cost (USD per 1M input / output tokens): the price of
# the dearest mainstream models, on purpose, so a budget stops it rather than letting it run free.
UNKNOWN_MODEL_USD = (15.00, 75.00)


@dataclass(frozen=True)
class Price:
    """Price per million input and output tokens; ``source`` says where it came from."""

    input_per_m: float
    output_per_m: float
    source: str = field(default="override", compare=False)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Cost of one call."""
        return (prompt_tokens * self.input_per_m + completion_tokens * self.output_per_m) / 1_000_000


def catalog_price_usd(model: str) -> tuple[float, float] | None:
    """USD per 1M input / output tokens from ``genai-prices`` (bundled data, no network); None if unknown."""
    from genai_prices import Usage, calc_price  # 0.4 s to import: only when a price is first needed

    try:
        per_input = calc_price(Usage(input_tokens=1_000_000, output_tokens=0), model_ref=model).total_price
        per_output = calc_price(Usage(input_tokens=0, output_tokens=1_000_000), model_ref=model).total_price
    except LookupError:
        return None
    return float(per_input), float(per_output)


class PriceTable:
    """Looks up a model's price: operator overrides, "free" when the operator says so, the catalog, else high."""

    def __init__(self, overrides: dict[str, tuple[float, float]], usd_rate: float = 1.0, free: bool = False):
        self._overrides = overrides
        self._rate = usd_rate
        self._free = free
        self._cache: dict[str, Price] = {}
        self._lock = threading.Lock()

    def price(self, model: str) -> Price:
        """The price of ``model`` in the operator's currency (thread-safe; cached)."""
        if model in self._overrides:
            return Price(*self._overrides[model], source="COO_LLM__PRICES")
        if self._free:
            return Price(0.0, 0.0, source="COO_LLM__FREE")
        cached = self._cache.get(model)
        if cached is not None:
            return cached
        with self._lock:
            cached = self._cache.get(model)
            if cached is not None:
                return cached
            usd = catalog_price_usd(model)
            if usd is None:
                log.warning(
                    "no known price for model %r: counted at %s/%s USD per 1M tokens", model, *UNKNOWN_MODEL_USD
                )
            source = "genai-prices" if usd is not None else "unknown model, priced high"
            usd = usd or UNKNOWN_MODEL_USD
            price = Price(usd[0] * self._rate, usd[1] * self._rate, source=source)
            self._cache[model] = price
        return price

    def warm(self, models: list[str]) -> None:
        """Look these models up now (the catalog takes ~0.5 s to load: call it off the event loop)."""
        for model in models:
            self.price(model)
