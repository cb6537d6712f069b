"""Model prices and cost arithmetic. Prices are per million tokens, in the operator's currency."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlparse

# USD per 1M tokens (input, output), as published by OpenAI for these models.
DEFAULT_PRICES_USD: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o4-mini": (1.10, 4.40),
    "o3-mini": (1.10, 4.40),
    "gpt-3.5-turbo": (0.50, 1.50),
}
# What an unknown model on a paid endpoint is assumed to cost: high on purpose, so budgets hold.
UNKNOWN_MODEL_USD = (5.00, 15.00)


@dataclass(frozen=True)
class Price:
    """Price per million input and output tokens."""

    input_per_m: float
    output_per_m: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Cost of one call."""
        return (prompt_tokens * self.input_per_m + completion_tokens * self.output_per_m) / 1_000_000


def is_local_endpoint(base_url: str | None) -> bool:
    """True for endpoints on this machine or a private network (Ollama, llama.cpp, vLLM): they cost 0."""
    if not base_url:
        return False
    host = urlparse(base_url).hostname or ""
    if host in ("localhost", "host.docker.internal") or host.endswith(".local"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private


class PriceTable:
    """Looks up a model's price: operator overrides, then defaults, 0 for local endpoints."""

    def __init__(self, base_url: str | None, overrides: dict[str, tuple[float, float]], usd_rate: float = 1.0):
        self._local = is_local_endpoint(base_url)
        self._overrides = overrides
        self._rate = usd_rate

    def price(self, model: str) -> Price:
        """The price of ``model`` in the operator's currency."""
        if model in self._overrides:
            return Price(*self._overrides[model])
        if self._local:
            return Price(0.0, 0.0)
        usd = DEFAULT_PRICES_USD.get(model)
        if usd is None:
            # Dated snapshots ("gpt-4o-mini-2024-07-18") cost what their family costs.
            family = max((name for name in DEFAULT_PRICES_USD if model.startswith(name)), key=len, default=None)
            usd = DEFAULT_PRICES_USD[family] if family else UNKNOWN_MODEL_USD
        return Price(usd[0] * self._rate, usd[1] * self._rate)
