"""Settings owned by the coordinator: the model endpoint."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator


class LLMSettings(BaseModel):
    """Any OpenAI-compatible endpoint. Nothing set means offline mode."""

    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str = "gpt-4o-mini"
    cheap_model: str | None = None
    timeout_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=10)
    retry_base_s: float = Field(default=0.5, ge=0)
    offline_cooldown_s: float = Field(default=30.0, ge=0)
    max_tool_rounds: int = Field(default=4, ge=1, le=20)
    max_completion_tokens: int = Field(default=1024, ge=16)
    breaker_failures: int = Field(default=3, ge=1)
    breaker_window_s: float = Field(default=300.0, gt=0)
    prices: dict[str, tuple[float, float]] = Field(default_factory=dict)
    # The operator's word that this endpoint costs nothing (own hardware): never inferred from its address.
    free: bool = False
    context_budget: int = Field(default=6000, ge=500)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("prices")
    @classmethod
    def _prices(cls, value: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        # A negative price would credit the ledger and NaN or infinity defeats every cap (I5): refuse to start.
        for model, pair in value.items():
            problem = price_problem(pair)
            if problem:
                raise ValueError(f"{model}: {problem}")
        return value

    @property
    def configured(self) -> bool:
        """True when a model endpoint is configured (otherwise offline mode)."""
        return self.base_url is not None or self.api_key is not None


def price_problem(pair: tuple[float, float]) -> str | None:
    """What is wrong with a (input, output) price per million tokens, or None."""
    if not all(math.isfinite(price) for price in pair):
        return f"a price must be a finite number, not {list(pair)}"
    if min(pair) < 0:
        return f"a price must be 0 or more, not {list(pair)}"
    return None


class ApprovalSettings(BaseModel):
    """The human gate: how long a card is valid, and the operator's risk tolerance."""

    ttl_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    risk_tolerance: Literal["cautious", "balanced", "relaxed"] = "balanced"
    forbidden: tuple[str, ...] = ()


class BudgetSettings(BaseModel):
    """The operator's currency. Default prices are in USD; ``usd_rate`` converts them (1 USD = rate)."""

    currency: str = Field(default="USD", min_length=1, max_length=8)
    usd_rate: float = Field(default=1.0, gt=0, allow_inf_nan=False)


class TaskSettings(BaseModel):
    """The task runner: how many tasks at once, leases, retries, progress messages."""

    concurrency: int = Field(default=2, ge=1, le=16)
    lease_s: float = Field(default=120.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=20)
    retry_base_s: float = Field(default=10.0, ge=0)
    poll_s: float = Field(default=1.0, gt=0)
    max_rounds: int = Field(default=6, ge=2, le=30)
    progress_interval_s: float = Field(default=3.0, ge=0)
