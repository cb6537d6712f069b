"""Model prices and cost arithmetic. Prices are per million tokens, in the operator's currency.

A model is priced by its name, whatever the endpoint it is reached through (a gateway on a private
address serves the same paid models): first the operator's overrides, then the maintained table of
``genai-prices``. A model is free only when the operator says so (``COO_LLM__FREE``); an unknown
model is priced high, never at 0, so that budgets hold (I5).
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field

from graph.settings import price_problem

log = logging.getLogger(__name__)

# What a model nobody priced is assumed to cost (USD per 1M input / output tokens): the price of
# the dearest mainstream models, on purpose, so a budget stops it rather than letting it run free.
UNKNOWN_MODEL_USD = (15.00, 75.00)
UNPRICED = "unknown model, priced high"
"""The ``source`` of a price nobody gave: see :data:`UNKNOWN_MODEL_USD`."""


@dataclass(frozen=True)
class Price:
    """Price per million input and output tokens; ``source`` says where it came from."""

    input_per_m: float
    output_per_m: float
    source: str = field(default="override", compare=False)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Cost of one call."""
        return (prompt_tokens * self.input_per_m + completion_tokens * self.output_per_m) / 1_000_000


# Model families the catalog lists under one provider but does not find by name alone (its provider
# inference misses them), e.g. OpenAI's embedding models: looked up under that provider.
_PROVIDER_BY_PREFIX = {"text-embedding-": "openai"}


def catalog_price_usd(model: str) -> tuple[float, float] | None:
    """USD per 1M input / output tokens from ``genai-prices`` (bundled data, no network); None if unknown."""
    from genai_prices import Usage, calc_price  # 0.4 s to import: only when a price is first needed

    provider = next((p for prefix, p in _PROVIDER_BY_PREFIX.items() if model.startswith(prefix)), None)
    for provider_id in dict.fromkeys((None, provider)):
        try:
            per_input = calc_price(Usage(input_tokens=1_000_000), model_ref=model, provider_id=provider_id)
            per_output = calc_price(Usage(output_tokens=1_000_000), model_ref=model, provider_id=provider_id)
        except LookupError:
            continue
        return float(per_input.total_price), float(per_output.total_price)
    return None


class PriceTable:
    """Looks up a model's price: operator overrides, "free" when the operator says so, the catalog, else high."""

    def __init__(
        self,
        overrides: dict[str, tuple[float, float]],
        usd_rate: float = 1.0,
        free: bool = False,
        *,
        cache: dict[str, Price] | None = None,
    ):
        """Raises ValueError for a negative or non-finite price or rate (settings refuse them first).

        ``free`` is the operator's word for one endpoint (the main one: ``COO_LLM__FREE``; a fallback: its
        ``free``), so each endpoint has a table of its own: :meth:`for_endpoint`.
        """
        for model, pair in overrides.items():
            problem = price_problem(pair)
            if problem:
                raise ValueError(f"{model}: {problem}")
        if not (math.isfinite(usd_rate) and usd_rate > 0):
            raise ValueError(f"usd_rate must be a finite number above 0, not {usd_rate}")
        self._overrides = overrides
        self._rate = usd_rate
        self._free = free
        self._cache: dict[str, Price] = {} if cache is None else cache
        self._lock = threading.Lock()

    @property
    def free(self) -> bool:
        """Whether the operator said this endpoint costs nothing."""
        return self._free

    def for_endpoint(self, free: bool) -> PriceTable:
        """The table of another endpoint: the same overrides, rate and catalog look-ups, its own ``free``."""
        return PriceTable(self._overrides, self._rate, free, cache=self._cache)

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
            source = "genai-prices" if usd is not None else UNPRICED
            usd = usd or UNKNOWN_MODEL_USD
            price = Price(usd[0] * self._rate, usd[1] * self._rate, source=source)
            self._cache[model] = price
        return price

    def warm(self, models: list[str]) -> None:
        """Look these models up now (the catalog takes ~0.5 s to load: call it off the event loop)."""
        for model in models:
            self.price(model)
